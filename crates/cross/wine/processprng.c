/*
 * bcryptprimitives.dll for Wine 8, which has no such DLL: its one export
 * that Rust's std imports (since Rust 1.78), ProcessPrng, filled from
 * advapi32's RtlGenRandom (exported as SystemFunction036). Without it a
 * Windows program built here exits at once with status 53 under Wine.
 * Built by xtask/src/windows.rs and placed beside a test's .exe only;
 * never shipped.
 *
 *   x86_64-w64-mingw32-gcc -shared -O2 -o bcryptprimitives.dll processprng.c -ladvapi32
 */
#include <windows.h>

/* RtlGenRandom: TRUE when `length` random bytes were written. */
BOOLEAN WINAPI SystemFunction036(PVOID buffer, ULONG length);

/* ProcessPrng takes a SIZE_T, RtlGenRandom a ULONG: fill in pieces. */
__declspec(dllexport) BOOL WINAPI ProcessPrng(PBYTE data, SIZE_T length)
{
    const ULONG piece = 1UL << 30;
    while (length > 0) {
        ULONG now = length > piece ? piece : (ULONG)length;
        if (!SystemFunction036(data, now)) {
            return FALSE;
        }
        data += now;
        length -= now;
    }
    return TRUE;
}
