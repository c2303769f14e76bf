"""Date formats for the console: operators compare events seconds apart, so times show
seconds, dates are unambiguous (ISO order), and every moment says its zone (the
operator's: UTC unless they switched to their own, see jobs.console.zone)."""

DATETIME_FORMAT = "Y-m-d H:i:s T"
SHORT_DATETIME_FORMAT = "Y-m-d H:i:s T"
DATE_FORMAT = "Y-m-d"
TIME_FORMAT = "H:i:s"
