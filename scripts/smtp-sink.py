#!/usr/bin/env python3
"""A local SMTP sink for scripts/perf.sh: accepts every message, keeps none,
and appends one line per delivered message (arrival time, seconds since the
epoch) to the file named on the command line.
Usage: smtp-sink.py PORT LOG [--quickack]
--quickack acknowledges every TCP segment at once (TCP_QUICKACK) instead of
delaying ACKs as a Linux receiver normally does; comparing the two shows how
much of the delivery rate a client's Nagle delay costs (docs/performance.md)."""
import asyncio
import socket
import sys
import time


async def session(reader, writer):
    log = session.log
    writer.write(b"220 sink ESMTP\r\n")
    in_data = False
    try:
        while True:
            line = await reader.readline()
            if session.quickack:
                writer.get_extra_info("socket").setsockopt(socket.IPPROTO_TCP, socket.TCP_QUICKACK, 1)
            if not line:
                break
            if in_data:
                if line in (b".\r\n", b".\n"):
                    in_data = False
                    log.write(f"{time.time():.6f}\n")
                    log.flush()
                    writer.write(b"250 OK queued\r\n")
                continue
            verb = line[:4].upper()
            if verb in (b"EHLO",):
                writer.write(b"250-sink\r\n250 8BITMIME\r\n")
            elif verb == b"DATA":
                in_data = True
                writer.write(b"354 go ahead\r\n")
            elif verb == b"QUIT":
                writer.write(b"221 bye\r\n")
                await writer.drain()
                break
            else:  # HELO, MAIL, RCPT, RSET, NOOP
                writer.write(b"250 OK\r\n")
            await writer.drain()
    except ConnectionError:
        pass
    finally:
        writer.close()


async def main():
    port, path = int(sys.argv[1]), sys.argv[2]
    session.log = open(path, "a")
    session.quickack = "--quickack" in sys.argv[3:]
    server = await asyncio.start_server(session, "127.0.0.1", port)
    async with server:
        await server.serve_forever()


asyncio.run(main())
