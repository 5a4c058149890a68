"""An iSCSI target (RFC 7143) in front of the simulated logical units.

``scsi_pr.target.proto`` is the sans-IO codec: PDUs, framing with digests, text keys, login and
negotiation, command sequencing and data transfer. It never touches a socket or a clock: the I/O
edge feeds it bytes and the current time and sends the bytes it returns.
"""
