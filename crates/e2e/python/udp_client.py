#!/usr/bin/env python3
"""The textbook's UDPClient.py (Kurose & Ross), made testable.

Same shape: sendto the server, recvfrom its reply, print it. The differences
let tests drive it: every line of stdin is sent (bytes, without its line
ending), no prompt, and a socket timeout so it never hangs: without a reply
it says so on stderr and exits 1.
"""
import argparse
import socket
import sys


def main():
    parser = argparse.ArgumentParser(description="Send each line of stdin, print each reply.")
    parser.add_argument("host")
    parser.add_argument("port", type=int)
    parser.add_argument("--timeout", type=float, default=5.0, help="seconds to wait per reply")
    args = parser.parse_args()

    family, _, _, _, serverAddress = socket.getaddrinfo(args.host, args.port, type=socket.SOCK_DGRAM)[0]
    clientSocket = socket.socket(family, socket.SOCK_DGRAM)
    clientSocket.settimeout(args.timeout)
    for line in sys.stdin.buffer:
        message = line.rstrip(b"\n").removesuffix(b"\r")
        clientSocket.sendto(message, serverAddress)
        try:
            modifiedMessage, _ = clientSocket.recvfrom(65536)
        except socket.timeout:
            print(f"error: no reply from {args.host}:{args.port} within {args.timeout} s", file=sys.stderr)
            return 1
        sys.stdout.buffer.write(modifiedMessage + b"\n")
        sys.stdout.buffer.flush()
    clientSocket.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
