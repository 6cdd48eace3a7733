#!/usr/bin/env python3
"""The textbook's UDPServer.py (Kurose & Ross), made testable.

Same shape: bind a datagram socket, then recvfrom / upper / sendto forever.
The differences let tests drive it: the port may be 0 (the system picks one,
and the ready line names it), the whole datagram is read (not just 2048
bytes), bytes that are not UTF-8 come back unchanged instead of crashing the
server, and SIGINT or SIGTERM end it quietly with status 0.
"""
import argparse
import signal
import sys
from socket import AF_INET, AF_INET6, SOCK_DGRAM, socket


def main():
    parser = argparse.ArgumentParser(description="Reply to each UDP datagram with its uppercase.")
    parser.add_argument("--bind", default="", help="address to receive on (default: all IPv4)")
    parser.add_argument("port", nargs="?", type=int, default=12000, help="0 picks a free port")
    args = parser.parse_args()

    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda *_: sys.exit(0))

    family = AF_INET6 if ":" in args.bind else AF_INET
    serverSocket = socket(family, SOCK_DGRAM)
    serverSocket.bind((args.bind, args.port))
    host, port = serverSocket.getsockname()[:2]
    host = f"[{host}]" if family == AF_INET6 else host
    print(f"The server is ready to receive on {host}:{port}", flush=True)
    while True:
        message, clientAddress = serverSocket.recvfrom(65536)
        # surrogateescape carries undecodable bytes through upper() unchanged.
        modifiedMessage = message.decode(errors="surrogateescape").upper()
        try:
            serverSocket.sendto(modifiedMessage.encode(errors="surrogateescape"), clientAddress)
        except OSError as err:  # an uppercase too long for one datagram
            print(f"warning: no reply to {clientAddress}: {err}", file=sys.stderr)


if __name__ == "__main__":
    main()
