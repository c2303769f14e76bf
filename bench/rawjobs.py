"""The baseline's job: what raw RQ runs when it does nothing."""


def noop(payload: dict | None = None) -> None:
    return None
