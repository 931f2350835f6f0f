// Philox4x32-10 counter-based generator (Salmon et al., SC 2011), host and device.
//
// The torch twin is sjframe/spike/philox.py (same rounds, same counter layout): element n of a
// flat tensor, noise stream s, key (k0, k1) takes word n & 3 of
//     philox(counter = (n >> 2 (low 32 bits), n >> 34, s, 0), key)
// and its uniform in (0, 1) is ((word >> 9) + 0.5) * 2^-23 (exact in float).
#ifndef SJ_PHILOX_CUH
#define SJ_PHILOX_CUH

SJ_HD void sj_mulhilo32(const unsigned int a, const unsigned int b, unsigned int& hi, unsigned int& lo) {
    const unsigned long long p = (unsigned long long)a * (unsigned long long)b;
    hi = (unsigned int)(p >> 32);
    lo = (unsigned int)p;
}

// Word (n & 3) of Philox4x32-10 at counter (c0, c1, c2, 0) under key (k0, k1).
SJ_HD unsigned int sj_philox_word(unsigned int c0, unsigned int c1, unsigned int c2, unsigned int k0, unsigned int k1,
                                  const int word) {
    unsigned int c3 = 0u;
    for (int r = 0; r < 10; ++r) {
        unsigned int hi0, lo0, hi1, lo1;
        sj_mulhilo32(0xD2511F53u, c0, hi0, lo0);
        sj_mulhilo32(0xCD9E8D57u, c2, hi1, lo1);
        const unsigned int n0 = hi1 ^ c1 ^ k0;
        const unsigned int n2 = hi0 ^ c3 ^ k1;
        c0 = n0;
        c1 = lo1;
        c2 = n2;
        c3 = lo0;
        k0 += 0x9E3779B9u;
        k1 += 0xBB67AE85u;
    }
    return word == 0 ? c0 : word == 1 ? c1 : word == 2 ? c2 : c3;
}

// Uniform in (0, 1) of element n, stream s, 64-bit key.
SJ_HD float sj_philox_uniform(const unsigned long long n, const unsigned int stream, const unsigned long long key) {
    const unsigned long long block = n >> 2;
    const unsigned int w = sj_philox_word((unsigned int)block, (unsigned int)(block >> 32), stream, (unsigned int)key,
                                          (unsigned int)(key >> 32), (int)(n & 3ull));
    return ((float)(w >> 9) + 0.5f) * 1.1920928955078125e-07f;  // 2^-23
}

#endif  // SJ_PHILOX_CUH
