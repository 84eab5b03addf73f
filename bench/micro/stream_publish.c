/* Experiment: publishing slots with non-temporal (streaming) 16-byte stores instead of
 * ordinary ones. A streaming store skips the read-for-ownership of each ring line; the
 * GPU finds slots only through the doorbell, which is stored after an sfence that makes
 * every streamed slot below it visible first. Built and loaded by dispatch_split.py --stream.
 *     cc -O2 -shared -fPIC -o stream_publish.so stream_publish.c
 */
#include <emmintrin.h>
#include <stdint.h>
#include <stddef.h>

#define SLOT_WORDS 16
#define PUBLISHED 1u

static size_t run(uint32_t *ring, size_t slots, size_t idx, const uint32_t *ops,
                  const uint32_t *args, size_t k, uint32_t tenant, uint32_t prio, size_t n,
                  int stream) {
    for (size_t i = 0; i < n; i++) {
        uint32_t a[12] = {0};
        for (size_t j = 0; j < k; j++) a[j] = args[i * k + j];
        __m128i *s = (__m128i *)(ring + idx * SLOT_WORDS);
        const __m128i h = _mm_setr_epi32((int)PUBLISHED, (int)ops[i], (int)tenant, (int)prio);
        const __m128i b0 = _mm_loadu_si128((const __m128i *)a);
        const __m128i b1 = _mm_loadu_si128((const __m128i *)(a + 4));
        const __m128i b2 = _mm_loadu_si128((const __m128i *)(a + 8));
        if (stream) {
            _mm_stream_si128(s + 1, b0); _mm_stream_si128(s + 2, b1);
            _mm_stream_si128(s + 3, b2); _mm_stream_si128(s, h);
        } else {
            _mm_store_si128(s + 1, b0); _mm_store_si128(s + 2, b1);
            _mm_store_si128(s + 3, b2); _mm_store_si128(s, h);
        }
        if (++idx == slots) idx = 0;
    }
    return idx;
}

/* n slots from ring slot `idx`; doorbell[0] = first + written after every `every` slots and
 * at the end, each behind an sfence. */
void publish(uint32_t *ring, size_t slots, size_t idx, const uint32_t *ops,
             const uint32_t *args, size_t k, uint32_t tenant, uint32_t prio, size_t n,
             uint64_t *doorbell, uint64_t first, size_t every, int stream) {
    size_t done = 0;
    if (every == 0) every = n;
    while (done < n) {
        size_t step = n - done < every ? n - done : every;
        idx = run(ring, slots, idx, ops + done, args + done * k, k, tenant, prio, step, stream);
        done += step;
        _mm_sfence();
        if (doorbell) __atomic_store_n(doorbell, first + done, __ATOMIC_RELEASE);
    }
}
