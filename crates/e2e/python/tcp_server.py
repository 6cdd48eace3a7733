#!/usr/bin/env python3
"""The textbook's TCPServer.py (Kurose & Ross), made testable.

Same shape: a welcoming socket that listens, then for each client accept /
recv(1024) / upper / send / close: one sentence per connection, answered as
it was read (no newline added), and the connection closed. The differences
let tests drive it: the port may be 0 (the system picks one, and the ready
line names it), bytes that are not UTF-8 come back unchanged instead of
crashing the server, and SIGINT or SIGTERM end it quietly with status 0.
"""
import argparse
import signal
import sys
from socket import AF_INET, AF_INET6, SOCK_STREAM, socket


def main():
    parser = argparse.ArgumentParser(description="Answer one sentence per TCP connection with its uppercase.")
    parser.add_argument("--bind", default="", help="address to listen on (default: all IPv4)")
    parser.add_argument("port", nargs="?", type=int, default=12000, help="0 picks a free port")
    args = parser.parse_args()

    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda *_: sys.exit(0))

    family = AF_INET6 if ":" in args.bind else AF_INET
    serverSocket = socket(family, SOCK_STREAM)
    serverSocket.bind((args.bind, args.port))
    serverSocket.listen(1)
    host, port = serverSocket.getsockname()[:2]
    host = f"[{host}]" if family == AF_INET6 else host
    print(f"The server is ready to receive on {host}:{port}", flush=True)
    while True:
        connectionSocket, addr = serverSocket.accept()
        try:
            sentence = connectionSocket.recv(1024)
            # surrogateescape carries undecodable bytes through upper() unchanged.
            capitalizedSentence = sentence.decode(errors="surrogateescape").upper()
            connectionSocket.sendall(capitalizedSentence.encode(errors="surrogateescape"))
        except OSError as err:  # a client that went away: the next one still gets served
            print(f"warning: {addr}: {err}", file=sys.stderr)
        finally:
            connectionSocket.close()


if __name__ == "__main__":
    main()
