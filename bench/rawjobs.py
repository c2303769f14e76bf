"""The baseline's job: what raw RQ runs when it does nothing."""


def noop() -> None:
    return None
