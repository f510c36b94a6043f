"""The raw-rq baseline's job: does nothing with its payload (bench/pipeline.py)."""


def noop(payload: str) -> None:
    return None
