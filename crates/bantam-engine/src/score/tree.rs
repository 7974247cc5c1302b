//! The candidate trie and one item's search over it.

use std::sync::Arc;

use super::ScoreMode;

/// The candidate trie.
#[derive(Debug)]
pub(super) struct Trie {
    pub(super) token: Vec<i32>,
    pub(super) parent: Vec<Option<usize>>,
    pub(super) depth: Vec<usize>,
    pub(super) children: Vec<Vec<usize>>,
    pub(super) roots: Vec<usize>,
    /// Candidates ending at each node.
    pub(super) ends_here: Vec<Vec<usize>>,
    /// Each candidate's path.
    pub(super) paths: Vec<Vec<usize>>,
}

impl Trie {
    pub(super) fn new(cands: &[Vec<i32>]) -> Self {
        let mut t = Trie {
            token: Vec::new(),
            parent: Vec::new(),
            depth: Vec::new(),
            children: Vec::new(),
            roots: Vec::new(),
            ends_here: Vec::new(),
            paths: Vec::new(),
        };
        for (c, toks) in cands.iter().enumerate() {
            let mut parent: Option<usize> = None;
            let mut path = Vec::with_capacity(toks.len());
            for (d, &tok) in toks.iter().enumerate() {
                let siblings = match parent {
                    Some(p) => &t.children[p],
                    None => &t.roots,
                };
                let idx = match siblings.iter().copied().find(|&n| t.token[n] == tok) {
                    Some(n) => n,
                    None => {
                        let n = t.token.len();
                        t.token.push(tok);
                        t.parent.push(parent);
                        t.depth.push(d);
                        t.children.push(Vec::new());
                        t.ends_here.push(Vec::new());
                        match parent {
                            Some(p) => t.children[p].push(n),
                            None => t.roots.push(n),
                        }
                        n
                    }
                };
                path.push(idx);
                parent = Some(idx);
            }
            t.ends_here[*path.last().expect("candidates are not empty")].push(c);
            t.paths.push(path);
        }
        t
    }

    pub(super) fn len(&self) -> usize {
        self.token.len()
    }
}

/// One item's search.
pub(super) struct Item {
    pub(super) job: u64,
    pub(super) index: usize,
    pub(super) own: Vec<i32>,
    /// Own tokens fed so far.
    pub(super) fed: usize,
    /// Sequence of the item's own text (the tree's root).
    pub(super) root_seq: i32,
    /// Position of depth-0 nodes.
    pub(super) base: usize,
    pub(super) trie: Arc<Trie>,
    /// Log-likelihood of reaching each node (its token included); NaN = unknown.
    pub(super) score: Vec<f32>,
    /// Sequence a computed node's cell belongs to (−1: not computed).
    pub(super) seq: Vec<i32>,
    /// Nodes with a known score, not computed yet.
    pub(super) open: Vec<usize>,
    /// Finished candidates' exact scores.
    pub(super) complete: Vec<Option<f32>>,
    /// Sequences of this item and the deepest node each reaches (None: the root).
    pub(super) seqs: Vec<(i32, Option<usize>)>,
    /// Sequences set aside for this item's branches.
    pub(super) spare: Vec<i32>,
    pub(super) computed: u32,
    pub(super) mode: ScoreMode,
    pub(super) terminator: Option<i32>,
    pub(super) finished: bool,
}

impl Item {
    /// The best entry: an open node (its bound) or a finished candidate.
    pub(super) fn best(&self) -> Option<(f32, Result<usize, usize>)> {
        let mut best: Option<(f32, Result<usize, usize>)> = None;
        for &n in &self.open {
            if best.is_none_or(|(b, _)| self.score[n] > b) {
                best = Some((self.score[n], Ok(n)));
            }
        }
        for (c, s) in self.complete.iter().enumerate() {
            if let Some(s) = *s {
                if best.is_none_or(|(b, _)| s > b) {
                    best = Some((s, Err(c)));
                }
            }
        }
        best
    }

    /// Scores to report: exact where finished, else the bound of the deepest known
    /// node on the candidate's path.
    pub(super) fn results(&self) -> (Vec<f32>, Vec<bool>) {
        let mut scores = Vec::with_capacity(self.complete.len());
        let mut exact = Vec::with_capacity(self.complete.len());
        for (c, path) in self.trie.paths.iter().enumerate() {
            match self.complete[c] {
                Some(s) => {
                    scores.push(s);
                    exact.push(true);
                }
                None => {
                    let known = path
                        .iter()
                        .copied()
                        .take_while(|&n| !self.score[n].is_nan())
                        .last();
                    let bound = match known {
                        Some(n) if self.mode == ScoreMode::Greedy => {
                            // A renormalised subtree's mass, shared by its candidates.
                            let k = self.trie.paths.iter().filter(|p| p.contains(&n)).count();
                            self.score[n] - (k.max(1) as f32).ln()
                        }
                        Some(n) => self.score[n],
                        None => 0.0,
                    };
                    scores.push(bound);
                    exact.push(false);
                }
            }
        }
        (scores, exact)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn trie_shares_prefixes() {
        let t = Trie::new(&[vec![1, 2, 3], vec![1, 2, 4], vec![5], vec![1, 2]]);
        // 1, 2, 3, 4, 5 → five nodes; "1 2" ends inside the others' path.
        assert_eq!(t.len(), 5);
        assert_eq!(t.roots, vec![0, 4]);
        assert_eq!(t.children[1], vec![2, 3]);
        assert_eq!(t.ends_here[1], vec![3]);
        assert_eq!(t.paths[1], vec![0, 1, 3]);
    }
}
