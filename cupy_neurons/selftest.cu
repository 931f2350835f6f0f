// Self-test kernel of common.cuh's 16-bit conversions (render with dtype float32).
// half_rt[n] = widen(narrow_half(x[n])), bf16_rt[n] = widen(narrow_bf16(x[n])): the float value
// each input rounds to in binary16 / bfloat16 (round to nearest even), to compare with torch.
namespace SJ_NS {
extern "C" __global__ void SJ_NAME(sj_roundtrip)(const float* __restrict__ x, float* __restrict__ half_rt,
                                                 float* __restrict__ bf16_rt, const long long N) {
    const sj_index n = sj_thread_index();
    if (n >= N) return;
    sj_half h;
    sj_bf16 b;
    sj_narrow(&h, x[n]);
    sj_narrow(&b, x[n]);
    half_rt[n] = sj_widen(h);
    bf16_rt[n] = sj_widen(b);
}
}  // namespace SJ_NS
