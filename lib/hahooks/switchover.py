"""`hahooks switchover`: placeholder, filled below."""


def register(sub, common) -> None:
    pass
