// Cost of the memory primitives the megakernel uses, on mapped pinned host memory.
// Build: nvcc -O3 -std=c++17 -arch=sm_90 sysmem_primitives.cu -o prims
#include <cuda/atomic>
#include <cstdio>
#include <cstdint>
#define CK(x) do { cudaError_t e = (x); if (e != cudaSuccess) { printf("%s: %s\n", #x, cudaGetErrorString(e)); return 1; } } while (0)
using sysref = cuda::atomic_ref<uint32_t, cuda::thread_scope_system>;

__global__ void chase_relaxed_sys(uint32_t *p, int n, uint32_t *out) {
    uint32_t i = 0;
    for (int k = 0; k < n; k++) i = sysref(p[i]).load(cuda::std::memory_order_relaxed);
    *out = i;
}
__global__ void chase_volatile(volatile uint32_t *p, int n, uint32_t *out) {
    uint32_t i = 0;
    for (int k = 0; k < n; k++) i = p[i];
    *out = i;
}
__global__ void store_fence(uint32_t *p, int n) {
    for (int k = 0; k < n; k++) sysref(p[0]).store(k, cuda::std::memory_order_release);
}
__global__ void store_relaxed(uint32_t *p, int n) {
    for (int k = 0; k < n; k++) sysref(p[0]).store(k, cuda::std::memory_order_relaxed);
}
__global__ void red_distinct(uint32_t *p, int n) {
    uint32_t t = blockIdx.x * blockDim.x + threadIdx.x;
    for (int k = 0; k < n; k++) sysref(p[(t * 16) % (1 << 20)]).fetch_add(1, cuda::std::memory_order_relaxed);
}
__global__ void red_same(uint32_t *p, int n) {
    for (int k = 0; k < n; k++) sysref(p[0]).fetch_add(1, cuda::std::memory_order_relaxed);
}
__global__ void cas_distinct(uint32_t *p, int n, uint32_t *out) {
    uint32_t t = blockIdx.x * blockDim.x + threadIdx.x, acc = 0;
    for (int k = 0; k < n; k++) { uint32_t e = k; sysref(p[(t * 16) % (1 << 20)]).compare_exchange_strong(e, k + 1); acc += e; }
    if (acc == 12345) *out = acc;
}
__global__ void read_slots(const uint4 *p, int slots, uint32_t *out) {
    uint32_t t = blockIdx.x * blockDim.x + threadIdx.x, nt = gridDim.x * blockDim.x, acc = 0;
    for (uint32_t s = t; s < (uint32_t)slots; s += nt) { uint4 a = p[s * 4], b = p[s * 4 + 1], c = p[s * 4 + 2], d = p[s * 4 + 3]; acc += a.x + b.y + c.z + d.w; }
    if (acc == 12345) *out = acc;
}
__global__ void write_status(uint32_t *p, int slots) {
    uint32_t t = blockIdx.x * blockDim.x + threadIdx.x, nt = gridDim.x * blockDim.x;
    for (uint32_t s = t; s < (uint32_t)slots; s += nt) sysref(p[s * 16]).store(3, cuda::std::memory_order_relaxed);
}
__global__ void ld_sys_distinct(uint32_t *p, int n, uint32_t *out) {
    uint32_t t = blockIdx.x * blockDim.x + threadIdx.x, acc = 0;
    for (int k = 0; k < n; k++) acc += sysref(p[((t + k * 7919) * 16) % (1 << 20)]).load(cuda::std::memory_order_relaxed);
    if (acc == 12345) *out = acc;
}

int main() {
    uint32_t *h, *d, *out;
    size_t words = 16u << 20;  // 64 MiB = 1M slots
    CK(cudaHostAlloc(&h, words * 4, cudaHostAllocMapped));
    for (size_t i = 0; i < words; i++) h[i] = 0;
    for (int i = 0; i < 4096; i++) h[i * 16] = (i + 1) % 4096 * 16;  // chase chain, 64 B apart
    CK(cudaHostGetDevicePointer(&d, h, 0));
    CK(cudaMalloc(&out, 64));
    cudaEvent_t a, b; cudaEventCreate(&a); cudaEventCreate(&b);
    float ms;
    int hostAtomics = 0; cudaDeviceGetAttribute(&hostAtomics, cudaDevAttrHostNativeAtomicSupported, 0);
    int pageable = 0; cudaDeviceGetAttribute(&pageable, cudaDevAttrPageableMemoryAccessUsesHostPageTables, 0);
    printf("hostNativeAtomicSupported=%d pageableUsesHostPageTables=%d\n", hostAtomics, pageable);
#define TIME(label, per, launch) do { launch; CK(cudaDeviceSynchronize()); cudaEventRecord(a); launch; cudaEventRecord(b); CK(cudaEventSynchronize(b)); cudaEventElapsedTime(&ms, a, b); printf("%-40s %10.3f us/op  %10.1f Mop/s\n", label, ms * 1e3 / (per), (per) / (ms * 1e3)); } while (0)
    TIME("dependent ld.relaxed.sys (1 thread)", 2000, (chase_relaxed_sys<<<1, 1>>>(d, 2000, out)));
    TIME("dependent volatile ld (1 thread)", 2000, (chase_volatile<<<1, 1>>>(d, 2000, out)));
    TIME("st.release.sys (1 thread)", 2000, (store_fence<<<1, 1>>>(d, 2000)));
    TIME("st.relaxed.sys (1 thread)", 2000, (store_relaxed<<<1, 1>>>(d, 2000)));
    TIME("red.sys same word (1 thread)", 2000, (red_same<<<1, 1>>>(d, 2000)));
    TIME("red.sys same word (132x128)", 132.0 * 128 * 50, (red_same<<<132, 128>>>(d, 50)));
    TIME("red.sys distinct words (132x128)", 132.0 * 128 * 50, (red_distinct<<<132, 128>>>(d, 50)));
    TIME("cas.sys distinct words (132x128)", 132.0 * 128 * 50, (cas_distinct<<<132, 128>>>(d, 50, out)));
    TIME("ld.relaxed.sys distinct (132x128)", 132.0 * 128 * 50, (ld_sys_distinct<<<132, 128>>>(d, 50, out)));
    TIME("read 64B slots, 16B loads (132x128)", 1 << 20, (read_slots<<<132, 128>>>((const uint4 *)d, 1 << 20, out)));
    TIME("read 64B slots, 16B loads (132x1024)", 1 << 20, (read_slots<<<132, 1024>>>((const uint4 *)d, 1 << 20, out)));
    TIME("store status word per slot (132x128)", 1 << 20, (write_status<<<132, 128>>>(d, 1 << 20)));
    return 0;
}
