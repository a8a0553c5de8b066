"""AES-GCM against published vectors.

Sources (typed in from the published documents):
* FIPS-197 (AES), Appendix B (cipher example) and Appendix C.1-C.3 (AES-128/192/256 examples).
* D. McGrew, J. Viega, "The Galois/Counter Mode of Operation (GCM)", revised 2005, Appendix B
  test cases 1-18 (the vectors NIST SP 800-38D points to): 1-6 AES-128, 7-12 AES-192,
  13-18 AES-256; cases 5/11/17 use a 64-bit IV and 6/12/18 a 480-bit IV (SP 800-38D §7.1).
"""

from __future__ import annotations

import os

import pytest

from ironflow_pkg import aesgcm
from ironflow_pkg.aesgcm import AesGcm, AuthenticationError, decrypt, encrypt, encrypt_block

H = bytes.fromhex

# --- FIPS-197 -------------------------------------------------------------------------------------

FIPS197 = [
    # Appendix B
    ("2b7e151628aed2a6abf7158809cf4f3c", "3243f6a8885a308d313198a2e0370734",
     "3925841d02dc09fbdc118597196a0b32"),
    # Appendix C.1 AES-128
    ("000102030405060708090a0b0c0d0e0f", "00112233445566778899aabbccddeeff",
     "69c4e0d86a7b0430d8cdb78070b4c55a"),
    # Appendix C.2 AES-192
    ("000102030405060708090a0b0c0d0e0f1011121314151617", "00112233445566778899aabbccddeeff",
     "dda97ca4864cdfe06eaf70a0ec0d7191"),
    # Appendix C.3 AES-256
    ("000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f",
     "00112233445566778899aabbccddeeff", "8ea2b7ca516745bfeafc49904b496089"),
]


@pytest.mark.parametrize("key,pt,ct", FIPS197)
def test_fips197_block_vectors(key, pt, ct):
    assert encrypt_block(H(key), H(pt)).hex() == ct


def test_sbox_spot_values():
    # FIPS-197 Figure 7: S(0x00)=0x63, S(0x53)=0xed, S(0xff)=0x16
    assert (aesgcm._SBOX[0x00], aesgcm._SBOX[0x53], aesgcm._SBOX[0xFF]) == (0x63, 0xED, 0x16)
    assert sorted(aesgcm._SBOX) == list(range(256))


# --- GCM spec test cases --------------------------------------------------------------------------

P60 = ("d9313225f88406e5a55909c5aff5269a86a7a9531534f7da2e4c303d8a318a72"
       "1c3c0c95956809532fcf0e2449a6b525b16aedf5aa0de657ba637b39")
P64 = P60 + "1aafd255"
A20 = "feedfacedeadbeeffeedfacedeadbeefabaddad2"
IV96 = "cafebabefacedbaddecaf888"
IV64 = "cafebabefacedbad"
IV480 = ("9313225df88406e555909c5aff5269aa6a7a9538534f7da1e4c303d2a318a728"
         "c3c0c95156809539fcf0e2429a6b525416aedbf5a0de6a57a637b39b")
K128 = "feffe9928665731c6d6a8f9467308308"
K192 = K128 + "feffe9928665731c"
K256 = K128 * 2

# (case, key, iv, plaintext, aad, ciphertext, tag)
GCM_CASES = [
    (1, "00" * 16, "00" * 12, "", "", "", "58e2fccefa7e3061367f1d57a4e7455a"),
    (2, "00" * 16, "00" * 12, "00" * 16, "", "0388dace60b6a392f328c2b971b2fe78",
     "ab6e47d42cec13bdf53a67b21257bddf"),
    (3, K128, IV96, P64, "",
     "42831ec2217774244b7221b784d0d49ce3aa212f2c02a4e035c17e2329aca12e"
     "21d514b25466931c7d8f6a5aac84aa051ba30b396a0aac973d58e091473f5985",
     "4d5c2af327cd64a62cf35abd2ba6fab4"),
    (4, K128, IV96, P60, A20,
     "42831ec2217774244b7221b784d0d49ce3aa212f2c02a4e035c17e2329aca12e"
     "21d514b25466931c7d8f6a5aac84aa051ba30b396a0aac973d58e091",
     "5bc94fbc3221a5db94fae95ae7121a47"),
    (5, K128, IV64, P60, A20,
     "61353b4c2806934a777ff51fa22a4755699b2a714fcdc6f83766e5f97b6c7423"
     "73806900e49f24b22b097544d4896b424989b5e1ebac0f07c23f4598",
     "3612d2e79e3b0785561be14aaca2fccb"),
    (6, K128, IV480, P60, A20,
     "8ce24998625615b603a033aca13fb894be9112a5c3a211a8ba262a3cca7e2ca7"
     "01e4a9a4fba43c90ccdcb281d48c7c6fd62875d2aca417034c34aee5",
     "619cc5aefffe0bfa462af43c1699d050"),
    (7, "00" * 24, "00" * 12, "", "", "", "cd33b28ac773f74ba00ed1f312572435"),
    (8, "00" * 24, "00" * 12, "00" * 16, "", "98e7247c07f0fe411c267e4384b0f600",
     "2ff58d80033927ab8ef4d4587514f0fb"),
    (9, K192, IV96, P64, "",
     "3980ca0b3c00e841eb06fac4872a2757859e1ceaa6efd984628593b40ca1e19c"
     "7d773d00c144c525ac619d18c84a3f4718e2448b2fe324d9ccda2710acade256",
     "9924a7c8587336bfb118024db8674a14"),
    (10, K192, IV96, P60, A20,
     "3980ca0b3c00e841eb06fac4872a2757859e1ceaa6efd984628593b40ca1e19c"
     "7d773d00c144c525ac619d18c84a3f4718e2448b2fe324d9ccda2710",
     "2519498e80f1478f37ba55bd6d27618c"),
    (11, K192, IV64, P60, A20,
     "0f10f599ae14a154ed24b36e25324db8c566632ef2bbb34f8347280fc4507057"
     "fddc29df9a471f75c66541d4d4dad1c9e93a19a58e8b473fa0f062f7",
     "65dcc57fcf623a24094fcca40d3533f8"),
    (12, K192, IV480, P60, A20,
     "d27e88681ce3243c4830165a8fdcf9ff1de9a1d8e6b447ef6ef7b79828666e45"
     "81e79012af34ddd9e2f037589b292db3e67c036745fa22e7e9b7373b",
     "dcf566ff291c25bbb8568fc3d376a6d9"),
    (13, "00" * 32, "00" * 12, "", "", "", "530f8afbc74536b9a963b4f1c4cb738b"),
    (14, "00" * 32, "00" * 12, "00" * 16, "", "cea7403d4d606b6e074ec5d3baf39d18",
     "d0d1c8a799996bf0265b98b5d48ab919"),
    (15, K256, IV96, P64, "",
     "522dc1f099567d07f47f37a32a84427d643a8cdcbfe5c0c97598a2bd2555d1aa"
     "8cb08e48590dbb3da7b08b1056828838c5f61e6393ba7a0abcc9f662898015ad",
     "b094dac5d93471bdec1a502270e3cc6c"),
    (16, K256, IV96, P60, A20,
     "522dc1f099567d07f47f37a32a84427d643a8cdcbfe5c0c97598a2bd2555d1aa"
     "8cb08e48590dbb3da7b08b1056828838c5f61e6393ba7a0abcc9f662",
     "76fc6ece0f4e1768cddf8853bb2d551b"),
    (17, K256, IV64, P60, A20,
     "c3762df1ca787d32ae47c13bf19844cbaf1ae14d0b976afac52ff7d79bba9de0"
     "feb582d33934a4f0954cc2363bc73f7862ac430e64abe499f47c9b1f",
     "3a337dbf46a792c45e454913fe2ea8f2"),
    (18, K256, IV480, P60, A20,
     "5a8def2f0c9e53f1f75d7853659e2a20eeb2b22aafde6419a058ab4f6f746bf4"
     "0fc0c3b780f244452da3ebf1c5d82cdea2418997200ef82e44ae7e3f",
     "a44a8266ee1c8eb0c8b5d4cf5ae9f19a"),
]


@pytest.mark.parametrize("case,key,iv,pt,aad,ct,tag", GCM_CASES, ids=[f"tc{c[0]}" for c in GCM_CASES])
def test_gcm_spec_vectors(case, key, iv, pt, aad, ct, tag):
    out = encrypt(H(key), H(iv), H(pt), H(aad))
    assert out.hex() == ct + tag
    assert decrypt(H(key), H(iv), out, H(aad)) == H(pt)


def test_gcm_hash_subkey_tc2():
    # McGrew-Viega test case 2 lists H = CIPH_K(0^128) = 66e94bd4ef8a2c3b884cfa59ca342b2e
    assert encrypt_block(bytes(16), bytes(16)).hex() == "66e94bd4ef8a2c3b884cfa59ca342b2e"


# --- tampering ------------------------------------------------------------------------------------

def _flip(data: bytes, bit: int) -> bytes:
    b = bytearray(data)
    b[bit // 8] ^= 1 << (bit % 8)
    return bytes(b)


def test_flipping_any_bit_fails_authentication():
    key, nonce, aad = H(K256), H(IV96), H(A20)
    sealed = encrypt(key, nonce, H(P60), aad)
    for bit in range(len(sealed) * 8):  # every ciphertext and tag bit
        with pytest.raises(AuthenticationError):
            decrypt(key, nonce, _flip(sealed, bit), aad)
    for bit in range(len(aad) * 8):
        with pytest.raises(AuthenticationError):
            decrypt(key, nonce, sealed, _flip(aad, bit))
    for bit in range(len(nonce) * 8):
        with pytest.raises(AuthenticationError):
            decrypt(key, _flip(nonce, bit), sealed, aad)
    for bit in (0, 100, 255):
        with pytest.raises(AuthenticationError):
            decrypt(_flip(key, bit), nonce, sealed, aad)


def test_truncated_extended_and_empty_inputs_fail():
    key, nonce = os.urandom(32), os.urandom(12)
    sealed = encrypt(key, nonce, b"hello", b"a")
    for bad in (sealed[:-1], sealed + b"\0", sealed[1:], b"", b"x" * 15):
        with pytest.raises(AuthenticationError):
            decrypt(key, nonce, bad, b"a")
    with pytest.raises(AuthenticationError):
        decrypt(key, nonce, sealed, b"")  # AAD removed
    assert issubclass(AuthenticationError, ValueError)


def test_round_trip_all_lengths_and_key_sizes():
    for klen in (16, 24, 32):
        cipher = AesGcm(os.urandom(klen))
        for n in list(range(0, 50)) + [255, 256, 257, 4096, 65536]:
            nonce, pt, aad = os.urandom(12), os.urandom(n), os.urandom(n % 37)
            sealed = cipher.encrypt(nonce, pt, aad)
            assert len(sealed) == n + 16
            assert cipher.decrypt(nonce, sealed, aad) == pt


def test_counter_wraps_in_low_32_bits_only():
    # inc32 (SP 800-38D §6.2): J0 = nonce || ffffffff -> the keystream must wrap to
    # nonce || 00000000, leaving the nonce part untouched. Compare with single-block encryptions.
    key = os.urandom(32)
    cipher = AesGcm(key)
    nonce_part = int.from_bytes(os.urandom(12), "big")
    j0 = (nonce_part << 32) | 0xFFFFFFFF
    ks = cipher._ctr(j0, bytes(32))
    expect = b"".join(encrypt_block(key, ((nonce_part << 32) | c).to_bytes(16, "big"))
                      for c in (0, 1))
    assert ks == expect


def test_bad_arguments():
    with pytest.raises(ValueError):
        encrypt(b"k" * 15, bytes(12), b"")
    with pytest.raises(ValueError):
        encrypt(b"k" * 32, b"", b"")
    with pytest.raises(ValueError):
        encrypt_block(b"k" * 16, b"short")
