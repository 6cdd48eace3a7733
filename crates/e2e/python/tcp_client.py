#!/usr/bin/env python3
"""The textbook's TCPClient.py (Kurose & Ross), made testable.

Same shape: one connection per sentence: connect, send the sentence (no
newline), read the reply, print it, close. The differences let tests drive
it: every line of stdin is a sentence (bytes, without its line ending), no
prompt, the sending side is shut down after the sentence so a streaming
server knows it is complete, the reply is read to the server's end of
stream rather than just its first 1024 bytes, and a socket timeout means
it never hangs: a server that does not answer is reported on stderr with
status 1.
"""
import argparse
import socket
import sys


def main():
    parser = argparse.ArgumentParser(description="Send each line of stdin over its own TCP connection, print each reply.")
    parser.add_argument("host")
    parser.add_argument("port", type=int)
    parser.add_argument("--timeout", type=float, default=5.0, help="seconds to wait for the server")
    args = parser.parse_args()

    for line in sys.stdin.buffer:
        sentence = line.rstrip(b"\n").removesuffix(b"\r")
        try:
            clientSocket = socket.create_connection((args.host, args.port), timeout=args.timeout)
            with clientSocket:
                clientSocket.sendall(sentence)
                clientSocket.shutdown(socket.SHUT_WR)
                modifiedSentence = b""
                while chunk := clientSocket.recv(1024):
                    modifiedSentence += chunk
        except OSError as err:
            print(f"error: {args.host}:{args.port}: {err}", file=sys.stderr)
            return 1
        sys.stdout.buffer.write(modifiedSentence + b"\n")
        sys.stdout.buffer.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main())
