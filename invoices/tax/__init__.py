"""Transmission to the tax authority (domain.md 3.5): the TDiep envelope (``envelope``), the 04/SS-HĐĐT notice of an
erroneous document (``notice``), the T-VAN file drop (``gateway``), and the messages and replies kept in the
database (``models``, ``service``)."""
