// Plain float64 reference of the SALA attention math; see ref64.h.
#include "ref/ref64.h"

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <limits>
#include <numeric>
#include <stdexcept>
#include <string>

namespace sala::ref {

namespace {

void require(bool ok, const char* what) {
    if (!ok) throw std::invalid_argument(std::string("sala::ref: ") + what);
}

std::size_t sz(long long n) { return static_cast<std::size_t>(n); }

double dot(const double* a, const double* b, int n) {
    double s = 0.0;
    for (int i = 0; i < n; ++i) s += a[i] * b[i];
    return s;
}

std::vector<double> alibi_pow2(int n) {
    // start = 2^(-2^-(log2 n - 3)); slope_h = start^(h+1)
    const double log2n = std::log2(static_cast<double>(n));
    const double start = std::pow(2.0, -std::pow(2.0, -(log2n - 3.0)));
    std::vector<double> s(sz(n));
    for (int h = 0; h < n; ++h) s[sz(h)] = std::pow(start, h + 1);
    return s;
}

constexpr double kInf = std::numeric_limits<double>::infinity();

// Softmax attention of one query vector over an explicit list of key indices.
void attend(const double* qv, const std::vector<int>& keys, const std::vector<double>& k,
            const std::vector<double>& v, int Hkv, int g, int D, double scale, double* out) {
    std::fill(out, out + D, 0.0);
    if (keys.empty()) return;
    std::vector<double> logit(keys.size());
    double mx = -kInf;
    for (std::size_t n = 0; n < keys.size(); ++n) {
        const double* kv = &k[(sz(keys[n]) * sz(Hkv) + sz(g)) * sz(D)];
        logit[n] = scale * dot(qv, kv, D);
        mx = std::max(mx, logit[n]);
    }
    double denom = 0.0;
    for (std::size_t n = 0; n < keys.size(); ++n) {
        logit[n] = std::exp(logit[n] - mx);
        denom += logit[n];
    }
    for (std::size_t n = 0; n < keys.size(); ++n) {
        const double w = logit[n] / denom;
        const double* vv = &v[(sz(keys[n]) * sz(Hkv) + sz(g)) * sz(D)];
        for (int d = 0; d < D; ++d) out[d] += w * vv[d];
    }
}

void check_sparse(const SparseParams& p) {
    require(p.kernel_size > 0 && p.kernel_stride > 0, "kernel_size/kernel_stride must be > 0");
    require(p.block_size > 0 && p.block_size % p.kernel_stride == 0,
            "block_size must be a positive multiple of kernel_stride");
    require(p.topk >= 0 && p.window_size >= 0 && p.init_blocks >= 0,
            "topk/window_size/init_blocks must be >= 0");
}

void check_qk(const std::vector<double>& q, int Tq, int Hq, const std::vector<double>& k, int L,
              int Hkv, int D, bool decode) {
    require(Tq > 0 && Hq > 0 && L > 0 && Hkv > 0 && D > 0, "dims must be > 0");
    require(Hq % Hkv == 0, "Hq must be a multiple of Hkv");
    require(q.size() == sz(Tq) * sz(Hq) * sz(D), "q must be [Tq][Hq][D]");
    require(k.size() == sz(L) * sz(Hkv) * sz(D), "k must be [L][Hkv][D]");
    if (decode)
        require(Tq == 1, "decode requires Tq == 1");
    else
        require(Tq == L, "prefill without cache requires Tq == L");
}

} // namespace

// ------------------------------------------------------------------------------------------

std::vector<double> alibi_slopes(int n_heads) {
    require(n_heads > 0, "alibi_slopes: n_heads must be > 0");
    int c = 1;
    while (c * 2 <= n_heads) c *= 2;
    if (c == n_heads) return alibi_pow2(n_heads);
    std::vector<double> s = alibi_pow2(c);
    const std::vector<double> extra = alibi_pow2(2 * c);
    for (int i = 0; i < n_heads - c; ++i) s.push_back(extra[sz(2 * i)]);
    return s;
}

std::vector<double> lightning_decays(const std::vector<double>& slopes) {
    std::vector<double> g(slopes.size());
    for (std::size_t h = 0; h < slopes.size(); ++h) g[h] = std::exp(-slopes[h]);
    return g;
}

std::vector<double> lightning_recurrent(const std::vector<double>& q, const std::vector<double>& k,
                                        const std::vector<double>& v, int T, int H, int D,
                                        const std::vector<double>& slopes, double scale,
                                        std::vector<double>& state) {
    require(T >= 0 && H > 0 && D > 0, "lightning_recurrent: bad dims");
    const std::size_t n = sz(T) * sz(H) * sz(D);
    require(q.size() == n && k.size() == n && v.size() == n,
            "lightning_recurrent: q/k/v must be [T][H][D]");
    require(slopes.size() == sz(H), "lightning_recurrent: slopes must be [H]");
    if (state.empty()) state.assign(sz(H) * sz(D) * sz(D), 0.0);
    require(state.size() == sz(H) * sz(D) * sz(D), "lightning_recurrent: state must be [H][D][D]");

    std::vector<double> o(n, 0.0);
    for (int h = 0; h < H; ++h) {
        const double gamma = std::exp(-slopes[sz(h)]);
        double* S = &state[sz(h) * sz(D) * sz(D)];
        for (int t = 0; t < T; ++t) {
            const std::size_t base = (sz(t) * sz(H) + sz(h)) * sz(D);
            const double* qt = &q[base];
            const double* kt = &k[base];
            const double* vt = &v[base];
            for (int i = 0; i < D; ++i)
                for (int j = 0; j < D; ++j)
                    S[sz(i) * sz(D) + sz(j)] = gamma * S[sz(i) * sz(D) + sz(j)] + kt[i] * vt[j];
            double* ot = &o[base];
            for (int j = 0; j < D; ++j) {
                double acc = 0.0;
                for (int i = 0; i < D; ++i) acc += qt[i] * S[sz(i) * sz(D) + sz(j)];
                ot[j] = scale * acc;
            }
        }
    }
    return o;
}

// ------------------------------------------------------------------------------------------

std::vector<double> rmsnorm(const std::vector<double>& x, const std::vector<double>& w, double eps,
                            int n) {
    require(n > 0 && x.size() % sz(n) == 0, "rmsnorm: x must be [rows][n]");
    require(w.size() == sz(n), "rmsnorm: w must be [n]");
    std::vector<double> y(x.size());
    const std::size_t rows = x.size() / sz(n);
    for (std::size_t r = 0; r < rows; ++r) {
        const double* xr = &x[r * sz(n)];
        double ss = 0.0;
        for (int i = 0; i < n; ++i) ss += xr[i] * xr[i];
        const double inv = 1.0 / std::sqrt(ss / n + eps);
        for (int i = 0; i < n; ++i) y[r * sz(n) + sz(i)] = xr[i] * inv * w[sz(i)];
    }
    return y;
}

std::vector<double> rope_neox(const std::vector<double>& x, int T, int H, int D,
                              const std::vector<int>& positions, double theta) {
    require(T >= 0 && H > 0 && D > 0 && D % 2 == 0, "rope_neox: bad dims (D must be even)");
    require(x.size() == sz(T) * sz(H) * sz(D), "rope_neox: x must be [T][H][D]");
    require(positions.size() == sz(T), "rope_neox: positions must be [T]");
    const int half = D / 2;
    std::vector<double> y(x.size());
    for (int t = 0; t < T; ++t) {
        for (int i = 0; i < half; ++i) {
            const double inv_freq = std::pow(theta, -2.0 * i / D);
            const double ang = static_cast<double>(positions[sz(t)]) * inv_freq;
            const double c = std::cos(ang), s = std::sin(ang);
            for (int h = 0; h < H; ++h) {
                const std::size_t base = (sz(t) * sz(H) + sz(h)) * sz(D);
                const double x1 = x[base + sz(i)], x2 = x[base + sz(i + half)];
                y[base + sz(i)] = x1 * c - x2 * s;
                y[base + sz(i + half)] = x2 * c + x1 * s;
            }
        }
    }
    return y;
}

// ------------------------------------------------------------------------------------------

std::vector<double> dense_attention(const std::vector<double>& q, int Tq, int Hq,
                                    const std::vector<double>& k, const std::vector<double>& v,
                                    int Tk, int Hkv, int D, int q_pos0, double scale) {
    require(Tq >= 0 && Hq > 0 && Hkv > 0 && D > 0 && Hq % Hkv == 0, "dense_attention: bad dims");
    require(q_pos0 >= 0 && Tk >= q_pos0 + Tq, "dense_attention: need Tk >= q_pos0 + Tq");
    require(q.size() == sz(Tq) * sz(Hq) * sz(D), "dense_attention: q must be [Tq][Hq][D]");
    require(k.size() == sz(Tk) * sz(Hkv) * sz(D) && v.size() == k.size(),
            "dense_attention: k/v must be [Tk][Hkv][D]");
    const int group = Hq / Hkv;
    std::vector<double> o(q.size(), 0.0);
    std::vector<int> keys;
    for (int t = 0; t < Tq; ++t) {
        keys.resize(sz(q_pos0 + t + 1));
        std::iota(keys.begin(), keys.end(), 0);
        for (int h = 0; h < Hq; ++h) {
            const std::size_t base = (sz(t) * sz(Hq) + sz(h)) * sz(D);
            attend(&q[base], keys, k, v, Hkv, h / group, D, scale, &o[base]);
        }
    }
    return o;
}

// ------------------------------------------------------------------------------------------

int num_compressed(int L, int kernel, int stride) {
    require(kernel > 0 && stride > 0 && L >= 0, "num_compressed: bad arguments");
    return L >= kernel ? (L - kernel) / stride + 1 : 0;
}

std::vector<double> compress_keys(const std::vector<double>& k, int L, int Hkv, int D, int kernel,
                                  int stride) {
    require(Hkv > 0 && D > 0, "compress_keys: bad dims");
    require(k.size() == sz(L) * sz(Hkv) * sz(D), "compress_keys: k must be [L][Hkv][D]");
    const int N = num_compressed(L, kernel, stride);
    std::vector<double> out(sz(N) * sz(Hkv) * sz(D), 0.0);
    for (int i = 0; i < N; ++i)
        for (int g = 0; g < Hkv; ++g) {
            double* o = &out[(sz(i) * sz(Hkv) + sz(g)) * sz(D)];
            for (int j = i * stride; j < i * stride + kernel; ++j) {
                const double* kj = &k[(sz(j) * sz(Hkv) + sz(g)) * sz(D)];
                for (int d = 0; d < D; ++d) o[d] += kj[d];
            }
            for (int d = 0; d < D; ++d) o[d] /= kernel;
        }
    return out;
}

int stage1_visible_kernel_formula(int t, int Lq, int N, int stride) {
    require(stride > 0 && t >= 0, "stage1_visible_kernel_formula: bad arguments");
    // (t+1) >= 1 so the floor is plain integer division; the second quotient may be negative
    // and C++ '/' truncates toward zero exactly like the CUDA kernel.
    const int v = (t + 1) / stride - 1 + N - (Lq - (stride - 1)) / stride;
    return std::max(0, v);
}

std::vector<double> infllmv2_stage1_scores(const std::vector<double>& q, int Tq, int Hq,
                                           const std::vector<double>& k, int L, int Hkv, int D,
                                           double scale, const SparseParams& p, bool decode) {
    check_sparse(p);
    check_qk(q, Tq, Hq, k, L, Hkv, D, decode);
    const int s1 = p.kernel_stride, s2 = 4 * p.kernel_stride;
    const std::vector<double> K1 = compress_keys(k, L, Hkv, D, p.kernel_size, s1);
    const std::vector<double> K2 = compress_keys(k, L, Hkv, D, 4 * p.kernel_size, s2);
    const int N1 = num_compressed(L, p.kernel_size, s1);
    const int N2 = num_compressed(L, 4 * p.kernel_size, s2);
    const int group = Hq / Hkv;

    std::vector<double> S(sz(Hkv) * sz(Tq) * sz(N1), 0.0);
    std::vector<double> l2;
    for (int t = 0; t < Tq; ++t) {
        int n1 = N1, n2 = N2;
        if (!decode) {
            n1 = std::min(N1, stage1_visible_kernel_formula(t, Tq, N1, s1));
            n2 = std::min(N2, stage1_visible_kernel_formula(t, Tq, N2, s2));
        }
        if (n2 == 0) continue; // whole row stays 0
        for (int g = 0; g < Hkv; ++g) {
            double* row = &S[(sz(g) * sz(Tq) + sz(t)) * sz(N1)];
            for (int h = g * group; h < (g + 1) * group; ++h) {
                const double* qh = &q[(sz(t) * sz(Hq) + sz(h)) * sz(D)];
                // lse over the visible K2 windows
                l2.assign(sz(n2), 0.0);
                double mx = -kInf;
                for (int j = 0; j < n2; ++j) {
                    l2[sz(j)] = scale * dot(qh, &K2[(sz(j) * sz(Hkv) + sz(g)) * sz(D)], D);
                    mx = std::max(mx, l2[sz(j)]);
                }
                double se = 0.0;
                for (int j = 0; j < n2; ++j) se += std::exp(l2[sz(j)] - mx);
                const double lse = mx + std::log(se);
                for (int i = 0; i < n1; ++i) {
                    const double sc = scale * dot(qh, &K1[(sz(i) * sz(Hkv) + sz(g)) * sz(D)], D);
                    row[i] += std::exp(sc - lse);
                }
            }
        }
    }
    return S;
}

std::vector<double> infllmv2_block_scores(const std::vector<double>& q, int Tq, int Hq,
                                          const std::vector<double>& k, int L, int Hkv, int D,
                                          double scale, const SparseParams& p, bool decode) {
    const std::vector<double> S = infllmv2_stage1_scores(q, Tq, Hq, k, L, Hkv, D, scale, p, decode);
    const int N1 = num_compressed(L, p.kernel_size, p.kernel_stride);
    const int nb = (L + p.block_size - 1) / p.block_size;
    const int step = p.block_size / p.kernel_stride; // pooling stride; kernel = step + 1, pad 1
    const int local = p.window_size / p.block_size;

    std::vector<double> out(sz(Hkv) * sz(Tq) * sz(nb));
    for (int g = 0; g < Hkv; ++g)
        for (int t = 0; t < Tq; ++t) {
            const double* srow = S.data() + (sz(g) * sz(Tq) + sz(t)) * sz(N1);  // S may be empty (N1 = 0)
            double* brow = &out[(sz(g) * sz(Tq) + sz(t)) * sz(nb)];
            const int pos = decode ? L - 1 : t;
            const int q_blk = pos / p.block_size;
            for (int b = 0; b < nb; ++b) {
                const int lo = std::max(0, b * step - 1);
                const int hi = std::min(N1, b * step - 1 + step + 1);
                double m = -kInf;
                for (int i = lo; i < hi; ++i) m = std::max(m, srow[i]);
                const bool forced = b < p.init_blocks || (b >= q_blk - local && b <= q_blk);
                brow[b] = forced ? kInf : m;
            }
        }
    return out;
}

std::vector<int> topk_lower_index(const std::vector<double>& scores, int kk) {
    require(kk >= 0, "topk_lower_index: kk must be >= 0");
    std::vector<int> order(scores.size());
    std::iota(order.begin(), order.end(), 0);
    // total order: score descending, then index ascending
    std::sort(order.begin(), order.end(), [&](int a, int b) {
        if (scores[sz(a)] != scores[sz(b)]) return scores[sz(a)] > scores[sz(b)];
        return a < b;
    });
    if (order.size() > sz(kk)) order.resize(sz(kk));
    return order;
}

std::vector<int> infllmv2_select(const std::vector<double>& q, int Tq, int Hq,
                                 const std::vector<double>& k, int L, int Hkv, int D, double scale,
                                 const SparseParams& p, bool decode) {
    const std::vector<double> bs = infllmv2_block_scores(q, Tq, Hq, k, L, Hkv, D, scale, p, decode);
    const int nb = (L + p.block_size - 1) / p.block_size;
    const int K = p.topk + p.window_size / p.block_size;
    std::vector<int> idx(sz(Hkv) * sz(Tq) * sz(K), -1);
    std::vector<double> row(sz(nb));
    for (int g = 0; g < Hkv; ++g)
        for (int t = 0; t < Tq; ++t) {
            const std::size_t off = (sz(g) * sz(Tq) + sz(t)) * sz(nb);
            std::copy(bs.begin() + static_cast<long>(off),
                      bs.begin() + static_cast<long>(off + sz(nb)), row.begin());
            std::vector<int> sel = topk_lower_index(row, K);
            std::sort(sel.begin(), sel.end());
            const int pos = decode ? L - 1 : t;
            const int q_blk = pos / p.block_size;
            int* dst = &idx[(sz(g) * sz(Tq) + sz(t)) * sz(K)];
            for (std::size_t n = 0; n < sel.size(); ++n) dst[n] = sel[n] > q_blk ? -1 : sel[n];
        }
    return idx;
}

std::vector<int> infllmv2_select(const std::vector<double>& q, int Tq, int Hq,
                                 const std::vector<double>& k, int L, int Hkv, int D, double scale,
                                 int kernel_size, int kernel_stride, int block_size, int topk,
                                 int window_size, int init_blocks, bool decode) {
    SparseParams p;
    p.kernel_size = kernel_size;
    p.kernel_stride = kernel_stride;
    p.block_size = block_size;
    p.topk = topk;
    p.window_size = window_size;
    p.init_blocks = init_blocks;
    return infllmv2_select(q, Tq, Hq, k, L, Hkv, D, scale, p, decode);
}

std::vector<double> block_sparse_attention(const std::vector<double>& q, int Tq, int Hq,
                                           const std::vector<double>& k,
                                           const std::vector<double>& v, int Tk, int Hkv, int D,
                                           const std::vector<int>& idx, int q_pos0, double scale,
                                           int block_size) {
    require(Tq > 0 && Hq > 0 && Hkv > 0 && D > 0 && Hq % Hkv == 0 && block_size > 0,
            "block_sparse_attention: bad dims");
    require(q.size() == sz(Tq) * sz(Hq) * sz(D), "block_sparse_attention: q must be [Tq][Hq][D]");
    require(k.size() == sz(Tk) * sz(Hkv) * sz(D) && v.size() == k.size(),
            "block_sparse_attention: k/v must be [Tk][Hkv][D]");
    require(q_pos0 >= 0 && Tk >= q_pos0 + Tq, "block_sparse_attention: need Tk >= q_pos0 + Tq");
    require(!idx.empty() && idx.size() % (sz(Hkv) * sz(Tq)) == 0,
            "block_sparse_attention: idx must be [Hkv][Tq][K]");
    const std::size_t K = idx.size() / (sz(Hkv) * sz(Tq));
    const int group = Hq / Hkv;
    const int nb = (Tk + block_size - 1) / block_size;

    std::vector<double> o(q.size(), 0.0);
    std::vector<char> on(sz(nb));
    std::vector<int> keys;
    for (int g = 0; g < Hkv; ++g)
        for (int t = 0; t < Tq; ++t) {
            std::fill(on.begin(), on.end(), 0);
            const int* sel = &idx[(sz(g) * sz(Tq) + sz(t)) * K];
            for (std::size_t n = 0; n < K; ++n)
                if (sel[n] >= 0 && sel[n] < nb) on[sz(sel[n])] = 1;
            const int pos = q_pos0 + t;
            keys.clear();
            for (int j = 0; j <= pos; ++j)
                if (on[sz(j / block_size)]) keys.push_back(j);
            for (int h = g * group; h < (g + 1) * group; ++h) {
                const std::size_t base = (sz(t) * sz(Hq) + sz(h)) * sz(D);
                attend(&q[base], keys, k, v, Hkv, g, D, scale, &o[base]);
            }
        }
    return o;
}

std::vector<double> infllmv2_attention(const std::vector<double>& q, int Tq, int Hq,
                                       const std::vector<double>& k, const std::vector<double>& v,
                                       int L, int Hkv, int D, double scale, const SparseParams& p,
                                       bool decode) {
    const std::vector<int> idx = infllmv2_select(q, Tq, Hq, k, L, Hkv, D, scale, p, decode);
    return block_sparse_attention(q, Tq, Hq, k, v, L, Hkv, D, idx, decode ? L - 1 : 0, scale,
                                  p.block_size);
}

} // namespace sala::ref
