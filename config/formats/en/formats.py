"""Date formats for the console: operators compare events seconds apart, so times show
seconds, and dates are unambiguous (ISO order)."""

DATETIME_FORMAT = "Y-m-d H:i:s"
SHORT_DATETIME_FORMAT = "Y-m-d H:i:s"
DATE_FORMAT = "Y-m-d"
TIME_FORMAT = "H:i:s"
