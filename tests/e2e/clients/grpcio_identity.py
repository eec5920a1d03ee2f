#!/usr/bin/env python3
"""Calls Identity Probe and GetPluginInfo on a CSI unix socket with Python's grpcio.

grpcio (>= 1.57) sends the socket path as the HTTP/2 :authority, as older grpc-go (gocsi's
csc), grpc-java and others do: the driver must answer it all the same. The messages are
encoded by hand (two fields) so that only grpcio is needed, not generated stubs.

Usage: grpcio_identity.py /path/to/csi.sock
Prints "name=<driver> probe=<ready|not-ready|gRPC code of the answer>"; a transport failure
(the RST_STREAM a refused :authority gets) is an exception and a non-zero exit.
"""
import sys
import time

import grpc


def field(msg: bytes, number: int) -> bytes:
    """The first length-delimited field `number` of a protobuf message (all we read)."""
    i = 0
    while i < len(msg):
        key = msg[i]
        i += 1
        num, wire = key >> 3, key & 7
        if wire == 2:
            n, shift = 0, 0
            while True:
                b = msg[i]
                i += 1
                n |= (b & 0x7F) << shift
                shift += 7
                if b < 0x80:
                    break
            if num == number:
                return msg[i : i + n]
            i += n
        elif wire == 0:
            while msg[i] & 0x80:
                i += 1
            i += 1
        else:
            raise ValueError(f"unexpected wire type {wire}")
    return b""


def main() -> None:
    sock = sys.argv[1]
    raw = dict(request_serializer=lambda m: m, response_deserializer=lambda m: m)
    with grpc.insecure_channel(f"unix:{sock}") as ch:
        info = ch.unary_unary("/csi.v1.Identity/GetPluginInfo", **raw)(b"", timeout=30)
        # Probe answers "not ready" while the driver's start-up runs (a loaded machine
        # makes that seconds): ask again until start-up has an answer, or 60 s pass.
        deadline = time.monotonic() + 60
        while True:
            try:
                probe = ch.unary_unary("/csi.v1.Identity/Probe", **raw)(b"", timeout=30)
                # Field 1 is a BoolValue whose field 1 is the bool (absent = false).
                ready = "ready" if field(probe, 1) == b"\x08\x01" else "not-ready"
            except grpc.RpcError as e:
                # The driver's own answer (e.g. FAILED_PRECONDITION without a VG on the host).
                ready = e.code().name
            if ready != "not-ready" or time.monotonic() > deadline:
                break
            time.sleep(0.2)
    name = field(info, 1).decode()
    print(f"name={name} probe={ready}")


if __name__ == "__main__":
    main()
