"""AES-GCM in pure Python (stdlib only): FIPS-197 AES + NIST SP 800-38D GCM.

Used for secrets at rest (features.md §8). Only the forward cipher is needed (GCM runs AES in
counter mode), so there is no inverse cipher here.

Speed (habit: make the pure-Python hot loop table-driven):

* AES uses the classic 32-bit T-tables (``_TE0``..``_TE3``: SubBytes+ShiftRows+MixColumns folded
  into four 256-entry word tables), so a round is 16 lookups and 16 XORs on Python ints.
* GHASH uses Shoup's 8-bit tables: for the hash key H, 16 tables of 256 precomputed products
  ``T[i][b] = (b placed at byte i) · H`` in GF(2^128), so multiplying a block by H is 16 lookups
  and 15 XORs. The tables are built by linearity from the 128 products ``H·x^k`` (no general
  multiplication at set-up) and cached per key.
* CTR keystream is produced block by block and XORed with the data as one big integer.

Nonces: any non-empty IV length is accepted (SP 800-38D §7.1: 96-bit IVs are used directly, other
lengths go through GHASH), but callers should use 12 random bytes. Tags are always 16 bytes.

Not constant-time: Python table lookups leak cache timing. Acceptable for encrypting secrets at
rest inside one process (no attacker-controlled oracle); the tag comparison itself uses
:func:`hmac.compare_digest`.
"""

from __future__ import annotations

import functools
import hmac

__all__ = [
    "AuthenticationError",
    "NONCE_SIZE",
    "TAG_SIZE",
    "AesGcm",
    "decrypt",
    "encrypt",
    "encrypt_block",
]

NONCE_SIZE = 12  # SP 800-38D §8.2: 96-bit IVs are the recommended, most efficient length
TAG_SIZE = 16  # full 128-bit tag; truncated tags are not offered
_KEY_ROUNDS = {16: 10, 24: 12, 32: 14}  # FIPS-197 §5, Nr by key length (AES-128/192/256)
# SP 800-38D §5.2.1.1: plaintext ≤ 2^39 - 256 bits; we never get near it but check anyway.
_MAX_PLAINTEXT = (2**39 - 256) // 8
_KEY_CACHE_SIZE = 16  # a server uses one master key; a few extra for tests and key rotation


class AuthenticationError(ValueError):
    """The tag did not verify: wrong key, nonce or AAD, or the data was altered."""


# --- FIPS-197 tables ------------------------------------------------------------------------------

def _build_sbox() -> list[int]:
    """S-box from its definition (§5.1.1): multiplicative inverse in GF(2^8) + affine map."""
    sbox = [0] * 256
    p = q = 1
    while True:  # walk p over the generator 3's powers and q over their inverses
        p = p ^ ((p << 1) & 0xFF) ^ (0x1B if p & 0x80 else 0)
        q ^= q << 1
        q ^= q << 2
        q ^= q << 4
        q &= 0xFF
        if q & 0x80:
            q ^= 0x09
        x = q ^ _rotl8(q, 1) ^ _rotl8(q, 2) ^ _rotl8(q, 3) ^ _rotl8(q, 4)
        sbox[p] = (x ^ 0x63) & 0xFF
        if p == 1:
            break
    sbox[0] = 0x63  # 0 has no inverse; the affine map of 0 is 0x63
    return sbox


def _rotl8(x: int, shift: int) -> int:
    return ((x << shift) | (x >> (8 - shift))) & 0xFF


def _xtime(x: int) -> int:
    """Multiply by x (i.e. {02}) in GF(2^8) modulo x^8 + x^4 + x^3 + x + 1 (§4.2.1)."""
    x <<= 1
    return (x ^ 0x11B) if x & 0x100 else x


_SBOX = _build_sbox()


def _build_te() -> tuple[list[int], list[int], list[int], list[int]]:
    """T-tables: Te0[a] = (2·S[a], S[a], S[a], 3·S[a]) as a big-endian word; Te1..3 rotate it."""
    te0, te1, te2, te3 = [], [], [], []
    for a in range(256):
        s = _SBOX[a]
        s2 = _xtime(s)
        s3 = s2 ^ s
        w = (s2 << 24) | (s << 16) | (s << 8) | s3
        te0.append(w)
        te1.append(((w >> 8) | (w << 24)) & 0xFFFFFFFF)
        te2.append(((w >> 16) | (w << 16)) & 0xFFFFFFFF)
        te3.append(((w >> 24) | (w << 8)) & 0xFFFFFFFF)
    return te0, te1, te2, te3


_TE0, _TE1, _TE2, _TE3 = _build_te()
# S-box shifted into each byte lane, for the final round (no MixColumns).
_S24 = [s << 24 for s in _SBOX]
_S16 = [s << 16 for s in _SBOX]
_S8 = [s << 8 for s in _SBOX]


def _expand_key(key: bytes) -> list[int]:
    """KeyExpansion (§5.2): 4·(Nr+1) 32-bit round-key words."""
    nk = len(key) // 4
    rounds = _KEY_ROUNDS[len(key)]
    w = [int.from_bytes(key[4 * i:4 * i + 4], "big") for i in range(nk)]
    rcon = 1
    for i in range(nk, 4 * (rounds + 1)):
        t = w[i - 1]
        if i % nk == 0:
            t = ((t << 8) | (t >> 24)) & 0xFFFFFFFF  # RotWord
            t = (_S24[(t >> 24) & 0xFF] | _S16[(t >> 16) & 0xFF] | _S8[(t >> 8) & 0xFF]
                 | _SBOX[t & 0xFF])  # SubWord
            t ^= rcon << 24
            rcon = _xtime(rcon)
        elif nk > 6 and i % nk == 4:
            t = (_S24[(t >> 24) & 0xFF] | _S16[(t >> 16) & 0xFF] | _S8[(t >> 8) & 0xFF]
                 | _SBOX[t & 0xFF])
        w.append(w[i - nk] ^ t)
    return w


def _encrypt_words(rk: list[int], rounds: int, s0: int, s1: int, s2: int, s3: int) -> int:
    """Cipher (§5.1) on a state given as four big-endian column words; returns a 128-bit int."""
    te0, te1, te2, te3 = _TE0, _TE1, _TE2, _TE3
    s0 ^= rk[0]
    s1 ^= rk[1]
    s2 ^= rk[2]
    s3 ^= rk[3]
    k = 4
    for _ in range(rounds - 1):
        t0 = (te0[s0 >> 24] ^ te1[(s1 >> 16) & 0xFF] ^ te2[(s2 >> 8) & 0xFF] ^ te3[s3 & 0xFF]
              ^ rk[k])
        t1 = (te0[s1 >> 24] ^ te1[(s2 >> 16) & 0xFF] ^ te2[(s3 >> 8) & 0xFF] ^ te3[s0 & 0xFF]
              ^ rk[k + 1])
        t2 = (te0[s2 >> 24] ^ te1[(s3 >> 16) & 0xFF] ^ te2[(s0 >> 8) & 0xFF] ^ te3[s1 & 0xFF]
              ^ rk[k + 2])
        s3 = (te0[s3 >> 24] ^ te1[(s0 >> 16) & 0xFF] ^ te2[(s1 >> 8) & 0xFF] ^ te3[s2 & 0xFF]
              ^ rk[k + 3])
        s0, s1, s2 = t0, t1, t2
        k += 4
    s24, s16, s8, sb = _S24, _S16, _S8, _SBOX
    r0 = (s24[s0 >> 24] | s16[(s1 >> 16) & 0xFF] | s8[(s2 >> 8) & 0xFF] | sb[s3 & 0xFF]) ^ rk[k]
    r1 = (s24[s1 >> 24] | s16[(s2 >> 16) & 0xFF] | s8[(s3 >> 8) & 0xFF] | sb[s0 & 0xFF]) ^ rk[k + 1]
    r2 = (s24[s2 >> 24] | s16[(s3 >> 16) & 0xFF] | s8[(s0 >> 8) & 0xFF] | sb[s1 & 0xFF]) ^ rk[k + 2]
    r3 = (s24[s3 >> 24] | s16[(s0 >> 16) & 0xFF] | s8[(s1 >> 8) & 0xFF] | sb[s2 & 0xFF]) ^ rk[k + 3]
    return (r0 << 96) | (r1 << 64) | (r2 << 32) | r3


def _check_key(key: bytes) -> None:
    if not isinstance(key, (bytes, bytearray)) or len(key) not in _KEY_ROUNDS:
        raise ValueError("AES key must be 16, 24 or 32 bytes")


def encrypt_block(key: bytes, block: bytes) -> bytes:
    """AES forward cipher of one 16-byte block (FIPS-197; exposed for the Appendix C tests)."""
    _check_key(key)
    if len(block) != 16:
        raise ValueError("AES block must be 16 bytes")
    rk = _expand_key(bytes(key))
    n = int.from_bytes(block, "big")
    out = _encrypt_words(rk, _KEY_ROUNDS[len(key)], n >> 96, (n >> 64) & 0xFFFFFFFF,
                         (n >> 32) & 0xFFFFFFFF, n & 0xFFFFFFFF)
    return out.to_bytes(16, "big")


# --- GF(2^128) for GHASH (SP 800-38D §6.3) -------------------------------------------------------
# Bit order: the first bit of a block (MSB of byte 0) is the coefficient of x^0. As a big-endian
# int that is bit 127, so multiplying by x is a right shift, reduced with R = 11100001 || 0^120.
_R = 0xE1 << 120


def _ghash_tables(h: int) -> list[list[int]]:
    """Shoup 8-bit tables: tables[i][b] = (block with byte i = b, zeros elsewhere) · H."""
    powers = [h]  # powers[k] = H · x^k
    v = h
    for _ in range(127):
        v = (v >> 1) ^ _R if v & 1 else v >> 1
        powers.append(v)
    tables = []
    for i in range(16):
        # bit t (value 1 << t) of byte i is int bit 8·(15-i)+t, i.e. the coefficient of x^k with
        # k = 127 - (8·(15-i)+t) = 8·i + 7 - t
        basis = [powers[8 * i + 7 - t] for t in range(8)]
        table = [0] * 256
        for b in range(1, 256):
            low = b & -b  # lowest set bit: table[b] = table[b without it] ^ basis[its index]
            table[b] = table[b ^ low] ^ basis[low.bit_length() - 1]
        tables.append(table)
    return tables


class AesGcm:
    """AES-GCM bound to one key: key schedule and GHASH tables are computed once.

    ``encrypt`` returns ``ciphertext || tag``; ``decrypt`` takes that and raises
    :class:`AuthenticationError` if the tag does not verify (no plaintext is released then).
    """

    __slots__ = ("_rk", "_rounds", "_tables")

    def __init__(self, key: bytes) -> None:
        _check_key(key)
        self._rk = _expand_key(bytes(key))
        self._rounds = _KEY_ROUNDS[len(key)]
        self._tables = _ghash_tables(self._block(0))  # H = CIPH_K(0^128)

    def _block(self, n: int) -> int:
        return _encrypt_words(self._rk, self._rounds, n >> 96, (n >> 64) & 0xFFFFFFFF,
                              (n >> 32) & 0xFFFFFFFF, n & 0xFFFFFFFF)

    def _ghash(self, y: int, data: bytes) -> int:
        """Absorb ``data`` (zero-padded to whole blocks) into the GHASH state ``y``."""
        t = self._tables
        t0, t1, t2, t3, t4, t5, t6, t7 = t[0], t[1], t[2], t[3], t[4], t[5], t[6], t[7]
        t8, t9, t10, t11, t12, t13, t14, t15 = (t[8], t[9], t[10], t[11], t[12], t[13], t[14],
                                                 t[15])
        rem = len(data) % 16
        if rem:
            data = bytes(data) + bytes(16 - rem)
        from_bytes = int.from_bytes
        for off in range(0, len(data), 16):
            b = (y ^ from_bytes(data[off:off + 16], "big")).to_bytes(16, "big")
            y = (t0[b[0]] ^ t1[b[1]] ^ t2[b[2]] ^ t3[b[3]] ^ t4[b[4]] ^ t5[b[5]] ^ t6[b[6]]
                 ^ t7[b[7]] ^ t8[b[8]] ^ t9[b[9]] ^ t10[b[10]] ^ t11[b[11]] ^ t12[b[12]]
                 ^ t13[b[13]] ^ t14[b[14]] ^ t15[b[15]])
        return y

    def _j0(self, nonce: bytes) -> int:
        """Pre-counter block (§7.1 step 2)."""
        if not isinstance(nonce, (bytes, bytearray)) or not nonce:
            raise ValueError("nonce must be non-empty bytes (12 bytes recommended)")
        if len(nonce) == 12:
            return (int.from_bytes(nonce, "big") << 32) | 1
        y = self._ghash(0, nonce)
        return self._ghash(y, (8 * len(nonce)).to_bytes(16, "big"))

    def _ctr(self, j0: int, data: bytes) -> bytes:
        """GCTR (§6.5) starting at inc32(J0): XOR ``data`` with the keystream."""
        if not data:
            return b""
        nblocks = (len(data) + 15) // 16
        rk, rounds, enc = self._rk, self._rounds, _encrypt_words
        w0, w1, w2 = (j0 >> 96) & 0xFFFFFFFF, (j0 >> 64) & 0xFFFFFFFF, (j0 >> 32) & 0xFFFFFFFF
        ctr = j0 & 0xFFFFFFFF
        stream = bytearray()
        for _ in range(nblocks):
            ctr = (ctr + 1) & 0xFFFFFFFF  # inc32: only the low 32 bits count
            stream += enc(rk, rounds, w0, w1, w2, ctr).to_bytes(16, "big")
        n = len(data)
        ks = int.from_bytes(stream[:n], "big")
        return (int.from_bytes(data, "big") ^ ks).to_bytes(n, "big")

    def _tag(self, j0: int, aad: bytes, ciphertext: bytes) -> bytes:
        """GHASH(A || pad || C || pad || len64(A) || len64(C)) XOR CIPH_K(J0) (§7.1 steps 5-6)."""
        y = self._ghash(0, aad)
        y = self._ghash(y, ciphertext)
        lengths = ((8 * len(aad)) << 64) | (8 * len(ciphertext))
        y = self._ghash(y, lengths.to_bytes(16, "big"))
        return (y ^ self._block(j0)).to_bytes(16, "big")

    def encrypt(self, nonce: bytes, plaintext: bytes, aad: bytes = b"") -> bytes:
        """Authenticated encryption (§7.1): returns ``ciphertext || 16-byte tag``."""
        if len(plaintext) > _MAX_PLAINTEXT:
            raise ValueError("plaintext too long for GCM")
        j0 = self._j0(nonce)
        ciphertext = self._ctr(j0, plaintext)
        return ciphertext + self._tag(j0, aad, ciphertext)

    def decrypt(self, nonce: bytes, data: bytes, aad: bytes = b"") -> bytes:
        """Authenticated decryption (§7.2) of ``ciphertext || tag``; checks the tag first."""
        if len(data) < TAG_SIZE:
            raise AuthenticationError("ciphertext shorter than the tag")
        j0 = self._j0(nonce)
        ciphertext, tag = data[:-TAG_SIZE], data[-TAG_SIZE:]
        if not hmac.compare_digest(self._tag(j0, aad, ciphertext), tag):
            raise AuthenticationError("authentication tag mismatch")
        return self._ctr(j0, ciphertext)


@functools.lru_cache(maxsize=_KEY_CACHE_SIZE)
def _cipher(key: bytes) -> AesGcm:
    return AesGcm(key)


def encrypt(key: bytes, nonce: bytes, plaintext: bytes, aad: bytes = b"") -> bytes:
    """AES-GCM encrypt with a 16/24/32-byte key; returns ``ciphertext || tag`` (16 bytes)."""
    _check_key(key)
    return _cipher(bytes(key)).encrypt(nonce, plaintext, aad)


def decrypt(key: bytes, nonce: bytes, data: bytes, aad: bytes = b"") -> bytes:
    """AES-GCM decrypt ``ciphertext || tag``; raises :class:`AuthenticationError` on mismatch."""
    _check_key(key)
    return _cipher(bytes(key)).decrypt(nonce, data, aad)
