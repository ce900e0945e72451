//! Speaker diarization's pure parts: windows over speech, clustering of their embeddings, and
//! speaker turns.
//!
//! The pipeline (what `masp diarize` runs, as two batches so each model is loaded once):
//!
//! 1. VAD gives speech segments;
//! 2. [`speech_windows`] cuts them into windows (default 1.5 s every 0.75 s; a segment shorter
//!    than a window is one window), and the speaker embedder embeds each
//!    ([`masp_orchestrator::task::TaskParams::Embed`] with `windows`);
//! 3. [`cluster`] groups the embeddings: agglomerative clustering on cosine distance with
//!    average linkage, cut at a distance threshold or at a number of speakers, then refined by
//!    reassigning each window to the nearest cluster centroid;
//! 4. [`turns`] gives every instant of speech the speaker of the nearest window centre in its
//!    segment and merges neighbours of the same speaker. Turns never leave speech.
//!
//! Everything here is deterministic and does no I/O.

use crate::{Error, Result};
use masp_models::embedder::{EMBEDDING_DIM, Embedding, cosine};

/// Cosine distance at which clusters stop merging, unless a number of speakers is given. It
/// applies to the embeddings as [`SpeakerOptions`] prepare them by default (smoothed, then
/// centred on the file's mean), where a distance of 1 means uncorrelated.
///
/// Chosen on the espeak-ng evaluation set (`scripts/eval/`, `docs/DIARIZATION.md`): the
/// embedder separates these voices weakly (raw window cosine within a speaker ~0.77, across
/// ~0.72), and centring is what makes a threshold usable (DER 63 % at 0.2 on raw embeddings,
/// 7–9 % at 1.0–1.2 on prepared ones). Within that plateau 1.2 gets the number of speakers
/// right on 10 of the 13 files (1.1: 9, over-splitting the committed two-voice sample) at a
/// DER of 8.9 % on the 12 conversations (1.1: 8.1 %); both tie at 8.5 % over all 13.
pub const DEFAULT_THRESHOLD: f64 = 1.2;

/// The shortest hop between embedding windows, in seconds: 0.05. The embedder's frames are
/// 10 ms and it averages 0.82 s sub-windows, so a finer hop adds embeddings (and a larger
/// distance matrix), not resolution; `--hop-s 1e-9` once asked for 10^9 windows a second.
pub const MIN_HOP_S: f64 = 0.05;

/// The longest embedding window, in seconds: 60. A window is one embedding, the mean of its
/// 0.82 s sub-windows; a minute is longer than any speaker turn it is meant to label, and
/// bounds the audio a window holds (3.7 MiB at 16 kHz).
pub const MAX_WINDOW_S: f64 = 60.0;

/// The most embedding windows one file may have: 20 000, over 4 hours of speech at the default
/// hop. Bounds the embedding stage's work and record per file; clustering them needs 2·n²
/// bytes more (800 MB at the limit), which is reserved against the budget before it is
/// allocated ([`linkage_bytes`]).
pub const MAX_WINDOWS_PER_FILE: usize = 20_000;

/// The longest smoothing radius, in seconds: an hour. Any radius longer than a speech segment
/// averages the whole segment, so a larger value only hides a mistyped one.
pub const MAX_SMOOTHING_S: f64 = 3600.0;

/// How window embeddings become speakers; see [`assign_speakers`].
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SpeakerOptions {
    /// Where to cut the clustering tree. Default: [`DEFAULT_THRESHOLD`].
    pub clustering: Clustering,
    /// Each window's embedding is replaced by the mean of the windows of the same speech
    /// segment whose centres are within this many seconds of its own. Default 1.5 (with the
    /// default windows: up to five windows). Steadier embeddings, at the price of blurring a
    /// speaker change inside a segment; 0 turns it off.
    pub smoothing_s: f64,
    /// Subtract the file's mean embedding before clustering. Default true: what all windows
    /// share (channel, language, the embedder's bias) dominates raw cosines; without it the
    /// speakers of a file differ only in the second decimal. A file with one speaker is then
    /// clustered on noise: give `Clustering::Speakers(1)` when that is known.
    pub centre: bool,
}

impl SpeakerOptions {
    /// Check ranges, so a command can refuse bad options before any work.
    ///
    /// # Errors
    /// [`Error::InvalidParameter`] for an invalid clustering (see [`Clustering::validate`]) or a
    /// smoothing radius that is not a number of seconds in `0..=`[`MAX_SMOOTHING_S`].
    ///
    /// # Examples
    ///
    /// ```
    /// use masp_run::diarize::SpeakerOptions;
    ///
    /// assert!(SpeakerOptions::default().validate().is_ok());
    /// let nan = SpeakerOptions { smoothing_s: f64::NAN, ..SpeakerOptions::default() };
    /// assert!(nan.validate().unwrap_err().to_string().contains("smoothing_s"));
    /// ```
    pub fn validate(&self) -> Result<()> {
        self.clustering.validate()?;
        if !(self.smoothing_s.is_finite() && (0.0..=MAX_SMOOTHING_S).contains(&self.smoothing_s)) {
            return Err(Error::InvalidParameter {
                name: "smoothing_s",
                reason: format!(
                    "{} is not a number of seconds from 0 to {MAX_SMOOTHING_S}",
                    self.smoothing_s
                ),
            });
        }
        Ok(())
    }
}

impl Default for SpeakerOptions {
    fn default() -> Self {
        Self {
            clustering: Clustering::default(),
            smoothing_s: 1.5,
            centre: true,
        }
    }
}

/// How speech is cut into windows for embedding.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct WindowConfig {
    /// Window length in seconds. Default 1.5. Longer windows give steadier embeddings but blur
    /// speaker changes inside them; the embedder sees 0.82 s sub-windows every 0.4 s.
    pub window_s: f64,
    /// Seconds between window starts. Default 0.75 (half a window). Smaller gives finer turn
    /// boundaries at the cost of more embeddings (and a larger distance matrix).
    pub hop_s: f64,
}

impl Default for WindowConfig {
    fn default() -> Self {
        Self {
            window_s: 1.5,
            hop_s: 0.75,
        }
    }
}

impl WindowConfig {
    /// Check ranges.
    ///
    /// # Errors
    /// [`Error::InvalidParameter`] unless [`MIN_HOP_S`] `<= hop_s <= window_s <=`
    /// [`MAX_WINDOW_S`] (NaN and infinities fail too).
    pub fn validate(&self) -> Result<()> {
        if !(self.window_s.is_finite() && self.window_s > 0.0 && self.window_s <= MAX_WINDOW_S) {
            return Err(Error::InvalidParameter {
                name: "window_s",
                reason: format!(
                    "{} is not a number of seconds above 0 and at most {MAX_WINDOW_S}",
                    self.window_s
                ),
            });
        }
        if !(self.hop_s.is_finite() && self.hop_s >= MIN_HOP_S && self.hop_s <= self.window_s) {
            return Err(Error::InvalidParameter {
                name: "hop_s",
                reason: format!(
                    "{} must be at least {MIN_HOP_S} s and at most the window ({} s)",
                    self.hop_s, self.window_s
                ),
            });
        }
        Ok(())
    }
}

/// Where to cut the clustering tree.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Clustering {
    /// Merge clusters while their average cosine distance is at most this (0..2).
    Threshold(f64),
    /// Exactly this many speakers (fewer only when there are fewer windows).
    Speakers(usize),
}

impl Default for Clustering {
    fn default() -> Self {
        Self::Threshold(DEFAULT_THRESHOLD)
    }
}

impl Clustering {
    /// Check ranges.
    ///
    /// # Errors
    /// [`Error::InvalidParameter`] for a threshold outside `0..=2` or zero speakers.
    pub fn validate(&self) -> Result<()> {
        match *self {
            Self::Threshold(t) if !(0.0..=2.0).contains(&t) => Err(Error::InvalidParameter {
                name: "threshold",
                reason: format!("{t} is not a cosine distance (0..2)"),
            }),
            Self::Speakers(0) => Err(Error::InvalidParameter {
                name: "speakers",
                reason: "must be at least 1".into(),
            }),
            _ => Ok(()),
        }
    }
}

/// A stretch of speech by one speaker.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize)]
pub struct Turn {
    /// Start in seconds.
    pub start_s: f64,
    /// End in seconds.
    pub end_s: f64,
    /// Speaker index: 0 for the first speaker heard, 1 for the next new one, …
    pub speaker: usize,
}

/// Seconds below which two times are the same (a window boundary within float noise).
const EPSILON_S: f64 = 1e-6;

/// Windows over speech segments `(start_s, end_s)`: in each segment, windows of
/// `config.window_s` every `config.hop_s`, the last one aligned to the segment's end so the
/// whole segment is covered; a segment no longer than a window is one window. Segments with
/// `end_s <= start_s` give none. Windows come in segment order.
///
/// # Errors
/// [`Error::InvalidParameter`] for an invalid `config`; [`Error::TooManyWindows`] when the
/// segments would give more than [`MAX_WINDOWS_PER_FILE`] windows (found before that many are
/// made).
///
/// # Examples
///
/// ```
/// use masp_run::diarize::{WindowConfig, speech_windows};
///
/// let w = speech_windows(&[(0.0, 3.0), (4.0, 4.5)], &WindowConfig::default()).unwrap();
/// assert_eq!(w, vec![(0.0, 1.5), (0.75, 2.25), (1.5, 3.0), (4.0, 4.5)]);
/// ```
pub fn speech_windows(segments: &[(f64, f64)], config: &WindowConfig) -> Result<Vec<(f64, f64)>> {
    config.validate()?;
    let mut out = Vec::new();
    // Every push goes through here: the count is checked before the vector grows past it.
    let push = |out: &mut Vec<(f64, f64)>, window: (f64, f64)| {
        if out.len() >= MAX_WINDOWS_PER_FILE {
            let speech_s = segments
                .iter()
                .map(|&(s, e)| (e - s).max(0.0))
                .filter(|d| d.is_finite())
                .sum();
            return Err(Error::TooManyWindows {
                speech_s,
                window_s: config.window_s,
                hop_s: config.hop_s,
                limit: MAX_WINDOWS_PER_FILE,
            });
        }
        out.push(window);
        Ok(())
    };
    for &(start, end) in segments {
        if end.partial_cmp(&start) != Some(std::cmp::Ordering::Greater) {
            continue;
        }
        if end - start <= config.window_s + EPSILON_S {
            push(&mut out, (start, end))?;
            continue;
        }
        let mut k = 0u32;
        loop {
            let s = start + f64::from(k) * config.hop_s;
            if s + config.window_s > end + EPSILON_S {
                break;
            }
            push(&mut out, (s, s + config.window_s))?;
            k += 1;
        }
        if let Some(&(_, last_end)) = out.last()
            && last_end < end - EPSILON_S
        {
            push(&mut out, (end - config.window_s, end))?;
        }
    }
    Ok(out)
}

/// One merge of the clustering tree: two leaves, each standing for the cluster it is in at that
/// point, and the average cosine distance between those clusters.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Merge {
    /// A leaf of the first cluster.
    pub a: usize,
    /// A leaf of the second cluster.
    pub b: usize,
    /// Average-linkage cosine distance between the two clusters.
    pub distance: f64,
}

/// Cosine distance `1 - cos`, in `0..=2`; anything undefined (NaN) counts as the largest.
fn cosine_distance(a: &Embedding, b: &Embedding) -> f64 {
    let d = 1.0 - cosine(a, b);
    if d.is_nan() { 2.0 } else { d.clamp(0.0, 2.0) }
}

/// Index of pair `(i, j)`, `i < j`, in a condensed upper-triangular matrix of `n` points.
fn condensed(n: usize, i: usize, j: usize) -> usize {
    let (i, j) = if i < j { (i, j) } else { (j, i) };
    i * n - i * (i + 1) / 2 + (j - i - 1)
}

/// The memory [`linkage`] allocates for `n_windows` embeddings: its condensed distance matrix
/// (`f32`, n·(n-1)/2 entries) and its per-leaf tables. Callers with a budget reserve this first
/// ([`crate::stages::speaker_turns`] does).
///
/// # Examples
///
/// ```
/// use masp_run::diarize::linkage_bytes;
///
/// assert_eq!(linkage_bytes(1).get(), 0);
/// assert!(linkage_bytes(20_000).get() > 800_000_000);
/// ```
pub fn linkage_bytes(n_windows: usize) -> masp_budget::Bytes {
    let n = n_windows as u64;
    if n < 2 {
        return masp_budget::Bytes::ZERO;
    }
    let matrix = n * (n - 1) / 2 * std::mem::size_of::<f32>() as u64;
    let per_leaf = (std::mem::size_of::<usize>() * 2 + 1 + std::mem::size_of::<Merge>()) as u64;
    masp_budget::Bytes::new(matrix + n * per_leaf)
}

/// The average-linkage tree over `embeddings` on cosine distance: `n - 1` merges sorted by
/// distance (the nearest-neighbour-chain algorithm, O(n²) time; the distances are kept as a
/// condensed `f32` matrix, 2·n² bytes).
///
/// The merges join every leaf into one tree, so applying any `m` of them leaves `n - m`
/// clusters.
pub fn linkage(embeddings: &[Embedding]) -> Vec<Merge> {
    let n = embeddings.len();
    if n < 2 {
        return Vec::new();
    }
    let mut dist = vec![0.0f32; n * (n - 1) / 2];
    for i in 0..n {
        for j in i + 1..n {
            dist[condensed(n, i, j)] = cosine_distance(&embeddings[i], &embeddings[j]) as f32;
        }
    }
    let mut size = vec![1usize; n];
    let mut active = vec![true; n];
    let mut chain: Vec<usize> = Vec::with_capacity(n);
    let mut merges = Vec::with_capacity(n - 1);
    for _ in 0..n - 1 {
        if chain.is_empty()
            && let Some(first) = active.iter().position(|&a| a)
        {
            chain.push(first);
        }
        let (a, b, d) = loop {
            let Some(&a) = chain.last() else {
                // Unreachable: the chain was just seeded; stop rather than loop.
                return finish_merges(merges);
            };
            let previous = chain.len().checked_sub(2).map(|k| chain[k]);
            // The previous element wins ties, so the chain never cycles.
            let (mut best, mut best_d) = match previous {
                Some(p) => (p, dist[condensed(n, a, p)]),
                None => (usize::MAX, f32::INFINITY),
            };
            for x in 0..n {
                if x != a && active[x] {
                    let d = dist[condensed(n, a, x)];
                    if d < best_d {
                        best = x;
                        best_d = d;
                    }
                }
            }
            if Some(best) == previous {
                chain.pop();
                chain.pop();
                break (a, best, best_d);
            }
            chain.push(best);
        };
        // Merge a into b (Lance–Williams for average linkage).
        let (sa, sb) = (size[a] as f64, size[b] as f64);
        for x in 0..n {
            if x != a && x != b && active[x] {
                let da = f64::from(dist[condensed(n, a, x)]);
                let db = f64::from(dist[condensed(n, b, x)]);
                dist[condensed(n, b, x)] = ((sa * da + sb * db) / (sa + sb)) as f32;
            }
        }
        active[a] = false;
        size[b] += size[a];
        merges.push(Merge {
            a,
            b,
            distance: f64::from(d),
        });
    }
    finish_merges(merges)
}

fn finish_merges(mut merges: Vec<Merge>) -> Vec<Merge> {
    merges.sort_by(|x, y| x.distance.total_cmp(&y.distance));
    merges
}

/// Union–find over leaves.
struct Forest {
    parent: Vec<usize>,
}

impl Forest {
    fn new(n: usize) -> Self {
        Self {
            parent: (0..n).collect(),
        }
    }

    fn root(&mut self, mut i: usize) -> usize {
        while self.parent[i] != i {
            self.parent[i] = self.parent[self.parent[i]];
            i = self.parent[i];
        }
        i
    }

    fn join(&mut self, a: usize, b: usize) {
        let (ra, rb) = (self.root(a), self.root(b));
        if ra != rb {
            self.parent[ra.max(rb)] = ra.min(rb);
        }
    }

    /// Labels 0, 1, … in order of each cluster's first leaf.
    fn labels(&mut self) -> Vec<usize> {
        let n = self.parent.len();
        let mut label_of_root = vec![usize::MAX; n];
        let mut next = 0;
        (0..n)
            .map(|i| {
                let r = self.root(i);
                if label_of_root[r] == usize::MAX {
                    label_of_root[r] = next;
                    next += 1;
                }
                label_of_root[r]
            })
            .collect()
    }
}

/// Speaker labels for `embeddings` (one per window, in time order): average-linkage clustering
/// on cosine distance, cut per `clustering`, then refined by reassigning every window to the
/// nearest cluster centroid (a few rounds of spherical k-means; the number of clusters is kept).
/// Labels are `0..k`, numbered by first appearance.
///
/// With [`Clustering::Speakers`]`(k)` there are exactly `min(k, n)` clusters.
///
/// # Errors
/// [`Error::InvalidParameter`] for an invalid `clustering`.
///
/// # Examples
///
/// ```
/// use masp_run::diarize::{Clustering, cluster};
/// use masp_models::embedder::EMBEDDING_DIM;
///
/// let unit = |d: usize| {
///     let mut e = [0.0; EMBEDDING_DIM];
///     e[d] = 1.0;
///     e
/// };
/// let labels = cluster(&[unit(0), unit(1), unit(0), unit(1)], Clustering::Speakers(2)).unwrap();
/// assert_eq!(labels, vec![0, 1, 0, 1]);
/// ```
pub fn cluster(embeddings: &[Embedding], clustering: Clustering) -> Result<Vec<usize>> {
    clustering.validate()?;
    let n = embeddings.len();
    let merges = linkage(embeddings);
    let mut forest = Forest::new(n);
    let applied = match clustering {
        Clustering::Threshold(t) => merges.iter().take_while(|m| m.distance <= t).count(),
        Clustering::Speakers(k) => n.saturating_sub(k.min(n)),
    };
    for m in &merges[..applied] {
        forest.join(m.a, m.b);
    }
    let labels = forest.labels();
    Ok(refine(embeddings, labels))
}

/// Rounds of centroid reassignment at most.
const REFINE_ROUNDS: usize = 10;

/// Spherical k-means from `labels`: reassign each embedding to its most similar centroid until
/// nothing changes. A round that would empty a cluster is not taken, so the number of clusters
/// stays. Labels are renumbered by first appearance.
fn refine(embeddings: &[Embedding], mut labels: Vec<usize>) -> Vec<usize> {
    let k = labels.iter().max().map_or(0, |m| m + 1);
    if k < 2 {
        return labels;
    }
    for _ in 0..REFINE_ROUNDS {
        let mut sums = vec![[0.0f64; EMBEDDING_DIM]; k];
        for (e, &l) in embeddings.iter().zip(&labels) {
            for (s, &x) in sums[l].iter_mut().zip(e) {
                *s += f64::from(x);
            }
        }
        let centroids: Vec<Embedding> = sums.iter().map(|s| s.map(|x| x as f32)).collect();
        let next: Vec<usize> = embeddings
            .iter()
            .zip(&labels)
            .map(|(e, &current)| {
                let mut best = current;
                let mut best_sim = cosine(e, &centroids[current]);
                for (c, centroid) in centroids.iter().enumerate() {
                    let sim = cosine(e, centroid);
                    if sim > best_sim {
                        best = c;
                        best_sim = sim;
                    }
                }
                best
            })
            .collect();
        let mut counts = vec![0usize; k];
        next.iter().for_each(|&l| counts[l] += 1);
        if next == labels || counts.contains(&0) {
            break;
        }
        labels = next;
    }
    renumber(&labels)
}

/// Labels renumbered 0, 1, … by first appearance.
fn renumber(labels: &[usize]) -> Vec<usize> {
    let mut map: Vec<(usize, usize)> = Vec::new();
    labels
        .iter()
        .map(|&l| match map.iter().find(|(from, _)| *from == l) {
            Some(&(_, to)) => to,
            None => {
                let to = map.len();
                map.push((l, to));
                to
            }
        })
        .collect()
}

/// Speaker turns from speech `segments`, embedding `windows` and their `labels` (one per
/// window). Segments are sorted and overlapping ones joined first. Within a segment every
/// instant goes to the speaker of the nearest window centre among the windows centred in that
/// segment (a segment without such a window takes the nearest window overall); neighbouring
/// pieces of the same speaker are merged. Turns are sorted, disjoint and inside the segments;
/// turns of different segments are never merged (the gap between them is not speech).
///
/// # Errors
/// [`Error::InvalidParameter`] when `windows` and `labels` differ in length.
///
/// # Examples
///
/// ```
/// use masp_run::diarize::turns;
///
/// let t = turns(&[(0.0, 3.0)], &[(0.0, 1.5), (1.5, 3.0)], &[0, 1]).unwrap();
/// assert_eq!(t.len(), 2);
/// assert_eq!((t[0].end_s, t[1].start_s), (1.5, 1.5));
/// ```
pub fn turns(
    segments: &[(f64, f64)],
    windows: &[(f64, f64)],
    labels: &[usize],
) -> Result<Vec<Turn>> {
    if windows.len() != labels.len() {
        return Err(Error::InvalidParameter {
            name: "labels",
            reason: format!(
                "{} labels for {} windows; there must be one per window",
                labels.len(),
                windows.len()
            ),
        });
    }
    let mut centres: Vec<(f64, usize)> = windows
        .iter()
        .zip(labels)
        .map(|(&(s, e), &l)| ((s + e) / 2.0, l))
        .filter(|(c, _)| c.is_finite())
        .collect();
    centres.sort_by(|a, b| a.0.total_cmp(&b.0));
    if centres.is_empty() {
        return Ok(Vec::new());
    }
    let mut out: Vec<Turn> = Vec::new();
    for (start, end) in join_segments(segments) {
        let lo = centres.partition_point(|c| c.0 < start);
        let hi = centres.partition_point(|c| c.0 <= end);
        let inside: &[(f64, usize)] = if lo < hi {
            &centres[lo..hi]
        } else {
            // The nearest window overall: the one just before or just after the segment.
            let mid = (start + end) / 2.0;
            let before = lo.checked_sub(1).map(|i| &centres[i..=i]);
            let after = centres.get(lo..=lo);
            match (before, after) {
                (Some(b), Some(a)) => {
                    if mid - b[0].0 <= a[0].0 - mid {
                        b
                    } else {
                        a
                    }
                }
                (Some(b), None) => b,
                (None, Some(a)) => a,
                (None, None) => continue,
            }
        };
        let mut piece_start = start;
        for (k, &(centre, speaker)) in inside.iter().enumerate() {
            let piece_end = match inside.get(k + 1) {
                Some(&(next, next_speaker)) if next_speaker != speaker => {
                    ((centre + next) / 2.0).clamp(piece_start, end)
                }
                Some(_) => continue,
                None => end,
            };
            if piece_end > piece_start {
                out.push(Turn {
                    start_s: piece_start,
                    end_s: piece_end,
                    speaker,
                });
            }
            piece_start = piece_end;
        }
    }
    // Speakers numbered by first appearance in time.
    let order = renumber(&out.iter().map(|t| t.speaker).collect::<Vec<_>>());
    for (t, s) in out.iter_mut().zip(order) {
        t.speaker = s;
    }
    Ok(out)
}

/// Speaker turns of one file: window embeddings prepared per `options` ([`smooth`] then
/// [`centre`]), clustered ([`cluster`]) and turned into [`turns`].
///
/// # Errors
/// [`Error::InvalidParameter`] for invalid options or when `windows` and `embeddings` differ in
/// length.
pub fn assign_speakers(
    segments: &[(f64, f64)],
    windows: &[(f64, f64)],
    embeddings: &[Embedding],
    options: &SpeakerOptions,
) -> Result<Vec<Turn>> {
    if windows.len() != embeddings.len() {
        return Err(Error::InvalidParameter {
            name: "embeddings",
            reason: format!(
                "{} embeddings for {} windows; there must be one per window",
                embeddings.len(),
                windows.len()
            ),
        });
    }
    options.validate()?;
    let mut prepared = smooth(segments, windows, embeddings, options.smoothing_s);
    if options.centre {
        prepared = centre(&prepared);
    }
    let labels = cluster(&prepared, options.clustering)?;
    turns(segments, windows, &labels)
}

/// Each embedding replaced by the L2-normalised mean of the embeddings of windows in the same
/// speech segment (by window centre) whose centres are within `radius_s` of its own. Windows in
/// no segment are left alone.
pub fn smooth(
    segments: &[(f64, f64)],
    windows: &[(f64, f64)],
    embeddings: &[Embedding],
    radius_s: f64,
) -> Vec<Embedding> {
    let speech = join_segments(segments);
    let place = |&(s, e): &(f64, f64)| {
        let c = (s + e) / 2.0;
        let k = speech.partition_point(|seg| seg.1 < c);
        let segment = speech.get(k).filter(|seg| seg.0 <= c).map(|_| k);
        (c, segment)
    };
    let placed: Vec<(f64, Option<usize>)> = windows.iter().map(place).collect();
    placed
        .iter()
        .zip(embeddings)
        .map(|(&(c, segment), e)| {
            if segment.is_none() || radius_s <= 0.0 {
                return *e;
            }
            let mut sum = [0.0f64; EMBEDDING_DIM];
            for ((&(c2, s2), e2), _) in placed.iter().zip(embeddings).zip(0..) {
                if s2 == segment && (c2 - c).abs() <= radius_s + EPSILON_S {
                    for (acc, &x) in sum.iter_mut().zip(e2) {
                        *acc += f64::from(x);
                    }
                }
            }
            unit(&sum)
        })
        .collect()
}

/// Embeddings minus their mean, L2-normalised.
pub fn centre(embeddings: &[Embedding]) -> Vec<Embedding> {
    if embeddings.is_empty() {
        return Vec::new();
    }
    let mut mean = [0.0f64; EMBEDDING_DIM];
    for e in embeddings {
        for (m, &x) in mean.iter_mut().zip(e) {
            *m += f64::from(x);
        }
    }
    let n = embeddings.len() as f64;
    mean.iter_mut().for_each(|m| *m /= n);
    embeddings
        .iter()
        .map(|e| {
            let mut v = [0.0f64; EMBEDDING_DIM];
            for ((d, &x), m) in v.iter_mut().zip(e).zip(&mean) {
                *d = f64::from(x) - m;
            }
            unit(&v)
        })
        .collect()
}

/// `v` divided by its L2 norm; a zero (or non-finite) vector gives zeros.
fn unit(v: &[f64; EMBEDDING_DIM]) -> Embedding {
    let norm = v.iter().map(|x| x * x).sum::<f64>().sqrt();
    if norm.is_finite() && norm > 0.0 {
        v.map(|x| (x / norm) as f32)
    } else {
        [0.0; EMBEDDING_DIM]
    }
}

/// Segments sorted, with overlapping or touching ones joined and empty or non-finite ones
/// dropped.
fn join_segments(segments: &[(f64, f64)]) -> Vec<(f64, f64)> {
    let mut sorted: Vec<(f64, f64)> = segments
        .iter()
        .copied()
        .filter(|&(s, e)| s.is_finite() && e.is_finite() && e > s)
        .collect();
    sorted.sort_by(|a, b| a.0.total_cmp(&b.0));
    let mut out: Vec<(f64, f64)> = Vec::with_capacity(sorted.len());
    for (s, e) in sorted {
        match out.last_mut() {
            Some(last) if s <= last.1 => last.1 = last.1.max(e),
            _ => out.push((s, e)),
        }
    }
    out
}

/// The number of distinct speakers in `turns`.
pub fn n_speakers(turns: &[Turn]) -> usize {
    turns.iter().map(|t| t.speaker + 1).max().unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn window_limits_are_checked_before_windows_are_made() {
        let refused = [
            (1.5, 0.001),
            (1.5, 1e-9),
            (1.5, 0.0),
            (1.5, -0.5),
            (1.5, f64::NAN),
            (1.5, f64::INFINITY),
            (61.0, 1.0),
            (f64::NAN, 0.75),
            (1e300, 0.75),
            (1.0, 2.0),
        ];
        for (window_s, hop_s) in refused {
            let config = WindowConfig { window_s, hop_s };
            assert!(
                matches!(config.validate(), Err(Error::InvalidParameter { .. })),
                "{config:?}"
            );
        }
        for (window_s, hop_s) in [
            (MAX_WINDOW_S, MAX_WINDOW_S),
            (MIN_HOP_S, MIN_HOP_S),
            (1.5, 0.75),
        ] {
            WindowConfig { window_s, hop_s }.validate().unwrap();
        }
        // Ten hours of speech at the smallest hop: refused after MAX_WINDOWS_PER_FILE, not after
        // 720 000 windows.
        let config = WindowConfig {
            window_s: 1.5,
            hop_s: MIN_HOP_S,
        };
        for segments in [
            vec![(0.0, 36_000.0)],
            (0..2000)
                .map(|k| (k as f64 * 20.0, k as f64 * 20.0 + 18.0))
                .collect(),
        ] {
            match speech_windows(&segments, &config) {
                Err(Error::TooManyWindows {
                    limit, speech_s, ..
                }) => {
                    assert_eq!(limit, MAX_WINDOWS_PER_FILE);
                    assert!(speech_s >= 36_000.0, "{speech_s}");
                }
                other => panic!("{:?}", other.map(|w| w.len())),
            }
        }
        // Just under the limit: made.
        let hop_s = 1.0;
        let segment_s = (MAX_WINDOWS_PER_FILE as f64 - 1.0) * hop_s;
        let w = speech_windows(
            &[(0.0, segment_s)],
            &WindowConfig {
                window_s: 1.0,
                hop_s,
            },
        )
        .unwrap();
        assert!(w.len() <= MAX_WINDOWS_PER_FILE, "{}", w.len());
    }

    #[test]
    fn speaker_options_are_checked_whole() {
        for options in [
            SpeakerOptions {
                smoothing_s: f64::NAN,
                ..SpeakerOptions::default()
            },
            SpeakerOptions {
                smoothing_s: -1.0,
                ..SpeakerOptions::default()
            },
            SpeakerOptions {
                smoothing_s: f64::INFINITY,
                ..SpeakerOptions::default()
            },
            SpeakerOptions {
                smoothing_s: MAX_SMOOTHING_S * 2.0,
                ..SpeakerOptions::default()
            },
            SpeakerOptions {
                clustering: Clustering::Threshold(f64::NAN),
                ..SpeakerOptions::default()
            },
            SpeakerOptions {
                clustering: Clustering::Speakers(0),
                ..SpeakerOptions::default()
            },
        ] {
            assert!(options.validate().is_err(), "{options:?}");
        }
        SpeakerOptions {
            smoothing_s: 0.0,
            ..SpeakerOptions::default()
        }
        .validate()
        .unwrap();
    }

    fn unit(dims: &[(usize, f32)]) -> Embedding {
        let mut e = [0.0; EMBEDDING_DIM];
        for &(d, v) in dims {
            e[d] = v;
        }
        e
    }

    #[test]
    fn windows_cover_each_segment_and_stay_inside() {
        let w = speech_windows(&[(1.0, 3.2)], &WindowConfig::default()).unwrap();
        assert_eq!(w.len(), 2);
        assert!((w[1].0 - 1.7).abs() < 1e-9);
        assert_eq!(w.first().unwrap().0, 1.0);
        assert!((w.last().unwrap().1 - 3.2).abs() < 1e-9);
        assert!(w.iter().all(|&(s, e)| s >= 1.0 && e <= 3.2 + 1e-9));
    }

    #[test]
    fn bad_window_configs_are_refused() {
        let bad = WindowConfig {
            window_s: 1.0,
            hop_s: 2.0,
        };
        assert!(matches!(
            speech_windows(&[(0.0, 1.0)], &bad),
            Err(Error::InvalidParameter { name: "hop_s", .. })
        ));
        assert!(Clustering::Speakers(0).validate().is_err());
        assert!(Clustering::Threshold(f64::NAN).validate().is_err());
    }

    #[test]
    fn two_clear_speakers_are_found_by_threshold() {
        let a = unit(&[(0, 1.0), (2, 0.1)]);
        let a2 = unit(&[(0, 1.0), (3, 0.1)]);
        let b = unit(&[(1, 1.0), (2, 0.1)]);
        let labels = cluster(&[a, b, a2, b, a], Clustering::Threshold(0.3)).unwrap();
        assert_eq!(labels, vec![0, 1, 0, 1, 0]);
    }

    #[test]
    fn linkage_matches_a_hand_computed_average_linkage() {
        // Points on a circle at angles 0, 0.1, 1.0 rad: cosine distances 1 - cos(Δ).
        let p = |a: f32| unit(&[(0, a.cos()), (1, a.sin())]);
        let m = linkage(&[p(0.0), p(0.1), p(1.0)]);
        assert_eq!(m.len(), 2);
        assert!((m[0].distance - (1.0 - 0.1f64.cos())).abs() < 1e-6);
        let second = ((1.0 - 1.0f64.cos()) + (1.0 - 0.9f64.cos())) / 2.0;
        assert!((m[1].distance - second).abs() < 1e-6);
    }

    #[test]
    fn nan_and_zero_embeddings_do_not_break_clustering() {
        let mut nan = [0.0; EMBEDDING_DIM];
        nan[0] = f32::NAN;
        let zero = [0.0; EMBEDDING_DIM];
        let labels = cluster(&[nan, zero, unit(&[(0, 1.0)])], Clustering::Speakers(2)).unwrap();
        assert_eq!(labels.len(), 3);
        assert_eq!(labels.iter().max(), Some(&1));
    }

    #[test]
    fn turns_split_at_centre_midpoints_and_merge_same_speaker() {
        let segments = [(0.0, 3.0), (5.0, 5.5)];
        let windows = [(0.0, 1.5), (0.75, 2.25), (1.5, 3.0), (5.0, 5.5)];
        let t = turns(&segments, &windows, &[1, 1, 0, 1]).unwrap();
        assert_eq!(
            t,
            vec![
                Turn {
                    start_s: 0.0,
                    end_s: 1.875,
                    speaker: 0
                },
                Turn {
                    start_s: 1.875,
                    end_s: 3.0,
                    speaker: 1
                },
                Turn {
                    start_s: 5.0,
                    end_s: 5.5,
                    speaker: 0
                },
            ]
        );
        assert_eq!(n_speakers(&t), 2);
        assert!(turns(&segments, &windows, &[0]).is_err());
    }

    fn embeddings(max: usize) -> impl Strategy<Value = Vec<Embedding>> {
        prop::collection::vec(prop::collection::vec(-1.0f32..1.0, 4), 0..max).prop_map(|rows| {
            rows.into_iter()
                .map(|r| {
                    let mut e = [0.0; EMBEDDING_DIM];
                    e[..4].copy_from_slice(&r);
                    e
                })
                .collect()
        })
    }

    fn segments() -> impl Strategy<Value = Vec<(f64, f64)>> {
        prop::collection::vec((0.0f64..60.0, 0.0f64..6.0), 0..12)
            .prop_map(|v| v.into_iter().map(|(s, d)| (s, s + d)).collect())
    }

    proptest! {
        #[test]
        fn fixed_speakers_gives_exactly_that_many_clusters(
            e in embeddings(40), k in 1usize..6,
        ) {
            let labels = cluster(&e, Clustering::Speakers(k)).unwrap();
            prop_assert_eq!(labels.len(), e.len());
            let n_clusters = labels.iter().max().map_or(0, |m| m + 1);
            prop_assert_eq!(n_clusters, k.min(e.len()));
            // Numbered by first appearance: every label first appears after all smaller ones.
            let mut seen = 0;
            for &l in &labels {
                prop_assert!(l <= seen);
                if l == seen { seen += 1; }
            }
        }

        #[test]
        fn threshold_zero_separates_and_two_joins(e in embeddings(30)) {
            let all = cluster(&e, Clustering::Threshold(2.0)).unwrap();
            prop_assert!(all.iter().all(|&l| l == 0));
            let merges = linkage(&e);
            prop_assert_eq!(merges.len(), e.len().saturating_sub(1));
            prop_assert!(merges.windows(2).all(|w| w[0].distance <= w[1].distance));
        }

        #[test]
        fn windows_lie_inside_their_segments(
            segs in segments(), window_s in 0.2f64..3.0, frac in 0.1f64..1.0,
        ) {
            let config = WindowConfig { window_s, hop_s: (window_s * frac).max(MIN_HOP_S) };
            let w = speech_windows(&segs, &config).unwrap();
            for &(s, e) in &w {
                prop_assert!(e > s);
                prop_assert!(e - s <= window_s + 1e-6);
                prop_assert!(segs.iter().any(|&(a, b)| s >= a - 1e-9 && e <= b + 1e-9));
            }
        }

        #[test]
        fn turns_are_sorted_disjoint_and_inside_speech(
            segs in segments(),
            labels_seed in prop::collection::vec(0usize..4, 0..200),
        ) {
            let w = speech_windows(&segs, &WindowConfig::default()).unwrap();
            let labels: Vec<usize> =
                (0..w.len()).map(|i| labels_seed.get(i).copied().unwrap_or(0)).collect();
            let t = turns(&segs, &w, &labels).unwrap();
            let speech = join_segments(&segs);
            for pair in t.windows(2) {
                prop_assert!(pair[0].end_s <= pair[1].start_s);
            }
            for turn in &t {
                prop_assert!(turn.end_s > turn.start_s);
                prop_assert!(speech.iter().any(|&(a, b)| turn.start_s >= a && turn.end_s <= b));
            }
            // All speech is covered when there is at least one window.
            if !w.is_empty() {
                let covered: f64 = t.iter().map(|x| x.end_s - x.start_s).sum();
                let total: f64 = speech.iter().map(|(a, b)| b - a).sum();
                prop_assert!((covered - total).abs() < 1e-6);
            }
        }
    }
}
