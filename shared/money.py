"""Money is integer fen (分); yuan appear only in texts people read."""


def yuan(fen: int) -> str:
    if not isinstance(fen, int):
        raise TypeError("money must be integer fen")
    sign = "-" if fen < 0 else ""
    fen = abs(fen)
    return f"{sign}{fen // 100}.{fen % 100:02d}"
