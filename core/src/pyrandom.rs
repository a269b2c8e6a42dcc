//! CPython's `random.Random`, bit for bit, as far as lm-evaluation-harness uses it to draw
//! few-shot examples: the Mersenne Twister MT19937 seeded exactly as `random.Random(int)` seeds
//! it, [`getrandbits`](PyRandom::getrandbits), `_randbelow` ([`randbelow`](PyRandom::randbelow))
//! and `sample(range(n), k)` ([`sample`](PyRandom::sample)). It follows CPython 3.12's
//! [Modules/_randommodule.c](https://github.com/python/cpython/blob/3.12/Modules/_randommodule.c)
//! (`init_genrand`, `init_by_array`, `random_seed`, `genrand_uint32`,
//! `_random_Random_getrandbits_impl`) and
//! [Lib/random.py](https://github.com/python/cpython/blob/3.12/Lib/random.py)
//! (`_randbelow_with_getrandbits`, `sample`). The unit tests check it against vectors that
//! CPython produced (`scripts/pyrandom-vectors` writes `core/tests/fixtures/pyrandom-vectors.json`;
//! the committed file comes from CPython 3.12; 3.11 gives the same vectors).
//!
//! ```
//! use evalkit_core::pyrandom::PyRandom;
//!
//! // random.Random(1234).sample(range(10), 3) == [7, 1, 0]
//! assert_eq!(PyRandom::new(1234).sample(10, 3)?, vec![7, 1, 0]);
//! # Ok::<(), evalkit_core::pyrandom::SampleError>(())
//! ```

use std::collections::HashSet;

/// Words of MT19937 state.
const N: usize = 624;
/// MT19937's middle word offset.
const M: usize = 397;
const MATRIX_A: u32 = 0x9908_b0df;
const UPPER_MASK: u32 = 0x8000_0000;
const LOWER_MASK: u32 = 0x7fff_ffff;

/// `sample` asked for more items than the population has (CPython raises `ValueError`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("Sample larger than population or is negative: k = {k}, population n = {n}")]
pub struct SampleError {
    /// How many items were asked for.
    pub k: usize,
    /// The population size.
    pub n: usize,
}

/// CPython's `random.Random`: MT19937's 624-word state and the index of the next word.
///
/// ```
/// use evalkit_core::pyrandom::PyRandom;
///
/// let mut rnd = PyRandom::new(1234);
/// let copy = rnd.clone();
/// assert_eq!(rnd.next_u32(), 4150886329); // random.Random(1234).getrandbits(32)
/// assert_eq!(copy.clone().next_u32(), 4150886329);
/// ```
#[derive(Clone, Debug)]
pub struct PyRandom {
    mt: [u32; N],
    index: usize,
}

impl PyRandom {
    /// Exactly `random.Random(seed)`: the key is the seed's 32-bit words, least significant
    /// first, without leading zero words (seed 0 is the key `[0]`); the state is
    /// `init_genrand(19650218)` followed by `init_by_array(key)`.
    ///
    /// ```
    /// use evalkit_core::pyrandom::PyRandom;
    ///
    /// assert_eq!(PyRandom::new(0).next_u32(), 3626764237); // random.Random(0).getrandbits(32)
    /// // Seeds past 2**32 are two key words, as in CPython.
    /// assert_ne!(PyRandom::new(1 << 32).next_u32(), PyRandom::new(0).next_u32());
    /// ```
    pub fn new(seed: u64) -> Self {
        let lo = seed as u32;
        let hi = (seed >> 32) as u32;
        let words = [lo, hi];
        let key = if hi == 0 { &words[..1] } else { &words[..] };
        let mut r = PyRandom { mt: [0; N], index: N };
        r.init_by_array(key);
        r
    }

    /// `init_genrand`: the state from one 32-bit word.
    fn init_genrand(&mut self, s: u32) {
        self.mt[0] = s;
        for i in 1..N {
            let prev = self.mt[i - 1];
            self.mt[i] = 1_812_433_253u32
                .wrapping_mul(prev ^ (prev >> 30))
                .wrapping_add(i as u32);
        }
        self.index = N;
    }

    /// `init_by_array`: the state from a key of 32-bit words (never empty).
    fn init_by_array(&mut self, key: &[u32]) {
        self.init_genrand(19_650_218);
        let mt = &mut self.mt;
        let (mut i, mut j) = (1usize, 0usize);
        for _ in 0..N.max(key.len()) {
            let prev = mt[i - 1];
            mt[i] = (mt[i] ^ (prev ^ (prev >> 30)).wrapping_mul(1_664_525))
                .wrapping_add(key[j])
                .wrapping_add(j as u32);
            i += 1;
            j += 1;
            if i >= N {
                mt[0] = mt[N - 1];
                i = 1;
            }
            if j >= key.len() {
                j = 0;
            }
        }
        for _ in 0..N - 1 {
            let prev = mt[i - 1];
            mt[i] = (mt[i] ^ (prev ^ (prev >> 30)).wrapping_mul(1_566_083_941)).wrapping_sub(i as u32);
            i += 1;
            if i >= N {
                mt[0] = mt[N - 1];
                i = 1;
            }
        }
        mt[0] = 0x8000_0000; // MSB is 1, assuring a non-zero initial array
    }

    /// Regenerates all 624 words (the first half of `genrand_uint32`).
    fn twist(&mut self) {
        let mt = &mut self.mt;
        let mag = |y: u32| if y & 1 == 0 { 0 } else { MATRIX_A };
        for kk in 0..N - M {
            let y = (mt[kk] & UPPER_MASK) | (mt[kk + 1] & LOWER_MASK);
            mt[kk] = mt[kk + M] ^ (y >> 1) ^ mag(y);
        }
        for kk in N - M..N - 1 {
            let y = (mt[kk] & UPPER_MASK) | (mt[kk + 1] & LOWER_MASK);
            mt[kk] = mt[kk + M - N] ^ (y >> 1) ^ mag(y);
        }
        let y = (mt[N - 1] & UPPER_MASK) | (mt[0] & LOWER_MASK);
        mt[N - 1] = mt[M - 1] ^ (y >> 1) ^ mag(y);
        self.index = 0;
    }

    /// The next tempered 32-bit word (`genrand_uint32`); the same as `getrandbits(32)`.
    ///
    /// ```
    /// use evalkit_core::pyrandom::PyRandom;
    ///
    /// let mut rnd = PyRandom::new(42);
    /// // [random.Random(42).getrandbits(32) for _ in range(2)] on one generator
    /// assert_eq!([rnd.next_u32(), rnd.next_u32()], [2746317213, 478163327]);
    /// ```
    pub fn next_u32(&mut self) -> u32 {
        if self.index >= N {
            self.twist();
        }
        let mut y = self.mt[self.index];
        self.index += 1;
        y ^= y >> 11;
        y ^= (y << 7) & 0x9d2c_5680;
        y ^= (y << 15) & 0xefc6_0000;
        y ^ (y >> 18)
    }

    /// `getrandbits(k)` as CPython computes it: 0 for k = 0 (drawing nothing); for k ≤ 32 one
    /// word shifted right by `32 - k`; otherwise 32-bit words from the least significant, the
    /// last one shifted right by `32 - remaining bits`.
    ///
    /// k is meant to be at most 64. Past 64 the result is CPython's `getrandbits(k)` modulo
    /// 2**64, and the generator advances by the same `ceil(k / 32)` words CPython draws.
    ///
    /// ```
    /// use evalkit_core::pyrandom::PyRandom;
    ///
    /// let mut rnd = PyRandom::new(1234);
    /// // r = random.Random(1234); [r.getrandbits(k) for k in (0, 7, 33)]
    /// assert_eq!([rnd.getrandbits(0), rnd.getrandbits(7), rnd.getrandbits(33)], [0, 123, 3342196574]);
    /// ```
    pub fn getrandbits(&mut self, k: u32) -> u64 {
        if k == 0 {
            return 0;
        }
        if k <= 32 {
            return u64::from(self.next_u32() >> (32 - k));
        }
        let mut out = 0u64;
        let mut left = k;
        let mut shift = 0u32;
        while left > 0 {
            let mut r = self.next_u32();
            if left < 32 {
                r >>= 32 - left;
            }
            if shift < 64 {
                out |= u64::from(r) << shift;
            }
            shift += 32;
            left = left.saturating_sub(32);
        }
        out
    }

    /// `_randbelow(n)` (`_randbelow_with_getrandbits`): `getrandbits(n.bit_length())`, redrawn
    /// until it is below n. A uniform integer in `0..n`.
    ///
    /// n = 0 returns 0 without drawing (CPython 3.12 would loop forever: `getrandbits(0)` is 0,
    /// never below 0). [`sample`](Self::sample) never asks for it.
    ///
    /// ```
    /// use evalkit_core::pyrandom::PyRandom;
    ///
    /// assert_eq!(PyRandom::new(1234).randbelow(1000), 989); // random.Random(1234)._randbelow(1000)
    /// assert_eq!(PyRandom::new(1234).randbelow(0), 0);
    /// ```
    pub fn randbelow(&mut self, n: u64) -> u64 {
        if n == 0 {
            return 0;
        }
        let k = u64::BITS - n.leading_zeros();
        loop {
            let r = self.getrandbits(k);
            if r < n {
                return r;
            }
        }
    }

    /// `sample(range(n), k)`: k distinct indices of `0..n` in selection order, drawn as CPython
    /// draws them. Where n is at most `setsize` (21, plus `4 ** ceil(log(3k, 4))` when k > 5) it
    /// keeps a pool (`j = randbelow(n - i)`, the vacancy filled from `pool[n - i - 1]`),
    /// otherwise a set of the chosen (`j = randbelow(n)`, redrawn while already chosen).
    ///
    /// # Errors
    /// [`SampleError`] when k > n.
    ///
    /// ```
    /// use evalkit_core::pyrandom::PyRandom;
    ///
    /// let mut rnd = PyRandom::new(1234);
    /// // rnd = random.Random(1234); [rnd.sample(range(10), 2) for _ in range(3)]
    /// let rows: Vec<Vec<usize>> = (0..3).map(|_| rnd.sample(10, 2).unwrap()).collect();
    /// assert_eq!(rows, [[7, 1], [0, 1], [9, 0]]);
    /// // random.Random(1234).sample(range(7473), 5): the set branch
    /// assert_eq!(PyRandom::new(1234).sample(7473, 5)?, [6374, 3610, 957, 61, 742]);
    /// assert!(PyRandom::new(1234).sample(3, 4).is_err());
    /// # Ok::<(), evalkit_core::pyrandom::SampleError>(())
    /// ```
    pub fn sample(&mut self, n: usize, k: usize) -> Result<Vec<usize>, SampleError> {
        if k > n {
            return Err(SampleError { k, n });
        }
        let mut result = Vec::with_capacity(k);
        if n as u128 <= setsize(k) {
            let mut pool: Vec<usize> = (0..n).collect();
            for i in 0..k {
                let j = self.randbelow((n - i) as u64) as usize;
                result.push(pool[j]);
                pool[j] = pool[n - i - 1];
            }
        } else {
            let mut selected = HashSet::with_capacity(k);
            for _ in 0..k {
                let mut j = self.randbelow(n as u64) as usize;
                while !selected.insert(j) {
                    j = self.randbelow(n as u64) as usize;
                }
                result.push(j);
            }
        }
        Ok(result)
    }

    /// `sample(pool, k)` over a slice: the items at [`sample`](Self::sample)'s indices.
    ///
    /// # Errors
    /// [`SampleError`] when k > `pool.len()`.
    ///
    /// ```
    /// use evalkit_core::pyrandom::PyRandom;
    ///
    /// let words = ["a", "b", "c", "d", "e", "f", "g", "h", "i", "j"];
    /// // random.Random(1234).sample("abcdefghij", 3)
    /// assert_eq!(PyRandom::new(1234).sample_from(&words, 3)?, [&"h", &"b", &"a"]);
    /// # Ok::<(), evalkit_core::pyrandom::SampleError>(())
    /// ```
    pub fn sample_from<'a, T>(&mut self, pool: &'a [T], k: usize) -> Result<Vec<&'a T>, SampleError> {
        Ok(self.sample(pool.len(), k)?.into_iter().map(|i| &pool[i]).collect())
    }
}

/// `sample`'s threshold: the pool branch runs when n <= this. Lib/random.py computes
/// `21 + 4 ** ceil(log(k * 3, 4))` for k > 5, where `math.log(x, 4)` is `log(x) / log(4.0)` in
/// C doubles and the int `3k` is first rounded to a double; the same arithmetic here gives the
/// same (occasionally off-by-one-power, for k beyond 10**14) exponent.
fn setsize(k: usize) -> u128 {
    let mut s = 21u128;
    if k > 5 {
        let x = (3 * k as u128) as f64;
        let e = (x.ln() / 4f64.ln()).ceil() as u32;
        s = s.saturating_add(4u128.checked_pow(e).unwrap_or(u128::MAX));
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::Value;

    fn vectors() -> Value {
        serde_json::from_str(include_str!("../tests/fixtures/pyrandom-vectors.json")).unwrap()
    }

    fn u64_of(v: &Value) -> u64 {
        v.as_u64().unwrap_or_else(|| panic!("not a u64: {v}"))
    }

    fn usizes(v: &Value) -> Vec<usize> {
        v.as_array().unwrap().iter().map(|x| u64_of(x) as usize).collect()
    }

    /// Every vector of every seed, each compared value by value.
    #[test]
    fn matches_cpython_per_seed() {
        let v = vectors();
        let seeds = v["seeds"].as_array().unwrap();
        assert!(seeds.len() >= 12);
        let mut checked = 0;
        for s in seeds {
            let seed = u64_of(&s["seed"]);

            let mut r = PyRandom::new(seed);
            let words = s["genrand_uint32"].as_array().unwrap();
            assert_eq!(words.len(), 10);
            for (i, w) in words.iter().enumerate() {
                assert_eq!(u64::from(r.next_u32()), u64_of(w), "seed {seed}: word {i}");
                checked += 1;
            }

            let mut r = PyRandom::new(seed);
            for (i, g) in s["getrandbits"].as_array().unwrap().iter().enumerate() {
                let k = u64_of(&g["k"]) as u32;
                assert_eq!(
                    r.getrandbits(k),
                    u64_of(&g["value"]),
                    "seed {seed}: getrandbits #{i} k={k}"
                );
                checked += 1;
            }

            let mut r = PyRandom::new(seed);
            for (i, b) in s["randbelow"].as_array().unwrap().iter().enumerate() {
                let n = u64_of(&b["n"]);
                assert_eq!(r.randbelow(n), u64_of(&b["value"]), "seed {seed}: randbelow #{i} n={n}");
                checked += 1;
            }

            for c in s["sample"].as_array().unwrap() {
                let (n, k) = (u64_of(&c["n"]) as usize, u64_of(&c["k"]) as usize);
                let want = usizes(&c["result"]);
                assert_eq!(want.len(), k);
                let got = PyRandom::new(seed).sample(n, k).unwrap();
                assert_eq!(got, want, "seed {seed}: sample(range({n}), {k})");
                checked += 1;
            }
        }
        assert!(checked > 2000, "only {checked} vectors");
    }

    #[test]
    fn matches_cpython_consecutive_samples() {
        let v = vectors();
        let seqs = v["sequences"].as_array().unwrap();
        let mut lm_eval = false;
        for q in seqs {
            let seed = u64_of(&q["seed"]);
            let (n, k) = (u64_of(&q["n"]) as usize, u64_of(&q["k"]) as usize);
            let results = q["results"].as_array().unwrap();
            lm_eval |= seed == 1234 && n == 7473 && k == 5 && results.len() == 50;
            let mut r = PyRandom::new(seed);
            for (i, want) in results.iter().enumerate() {
                assert_eq!(
                    r.sample(n, k).unwrap(),
                    usizes(want),
                    "Random({seed}): call {i} of sample(range({n}), {k})"
                );
            }
        }
        assert!(lm_eval, "the 50 lm-eval draws from Random(1234) are missing");
    }

    #[test]
    fn setsize_matches_cpython() {
        let v = vectors();
        let rows = v["setsize"].as_array().unwrap();
        assert!(rows.len() > 300);
        for row in rows {
            let k = u64_of(&row["k"]) as usize;
            let want: u128 = row["setsize"].as_str().unwrap().parse().unwrap();
            assert_eq!(setsize(k), want, "setsize for k = {k}");
        }
    }

    #[test]
    fn sample_larger_than_population_errors() {
        let mut r = PyRandom::new(1234);
        let e = r.sample(3, 4).unwrap_err();
        assert_eq!(e, SampleError { k: 4, n: 3 });
        assert!(
            e.to_string().contains("k = 4") && e.to_string().contains("n = 3"),
            "{e}"
        );
        assert!(r.sample(0, 1).is_err());
        assert!(r.sample_from(&[1, 2], 3).is_err());
        // The error draws nothing: the generator is still fresh.
        assert_eq!(r.next_u32(), PyRandom::new(1234).next_u32());
        assert_eq!(r.sample(0, 0).unwrap(), Vec::<usize>::new());
    }

    #[test]
    fn fixture_comes_from_cpython() {
        let v = vectors();
        let version = v["python_version"].as_str().unwrap();
        assert!(version.starts_with("3.12"), "{version}");
    }
}
