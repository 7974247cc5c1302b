"""Reference values for Bantam's metrics, from the libraries users trust.

    python3 tests/python/metrics_reference.py < cases.json > reference.json

Input: {"bleu": [{"hyps": [...], "refs": [[ref per hyp], ...]}],
        "classification": [{"truth": [...], "pred": [...]}],
        "rouge": [{"targets": [...], "prediction": "..."}],
        "stems": ["word", ...]}
`refs` follows sacrebleu: a list of reference streams, each with one reference per
hypothesis. Output: sacrebleu's corpus BLEU (defaults), scikit-learn's accuracy,
macro/micro F1, per-class precision/recall/F1 (zero_division=0) and confusion matrix,
rouge-score's ROUGE-1/2/L/Lsum (use_stemmer=True, score_multi) and NLTK's Porter
stems.
"""

import json
import sys

import sacrebleu
from nltk.stem import porter
from rouge_score import rouge_scorer
from sklearn import metrics


def main():
    cases = json.load(sys.stdin)
    out = {"bleu": [], "classification": []}
    for c in cases["bleu"]:
        b = sacrebleu.corpus_bleu(c["hyps"], c["refs"])
        out["bleu"].append({"score": b.score, "precisions": b.precisions, "bp": b.bp,
                            "sys_len": b.sys_len, "ref_len": b.ref_len})
    for c in cases["classification"]:
        t, p = c["truth"], c["pred"]
        labels = sorted(set(t) | set(p))
        pr, rc, f1, sup = metrics.precision_recall_fscore_support(t, p, labels=labels, zero_division=0)
        out["classification"].append({
            "labels": labels,
            "accuracy": metrics.accuracy_score(t, p),
            "macro_f1": metrics.f1_score(t, p, average="macro", zero_division=0),
            "micro_f1": metrics.f1_score(t, p, average="micro", zero_division=0),
            "precision": list(pr), "recall": list(rc), "f1": list(f1),
            "support": [int(x) for x in sup],
            "confusion": metrics.confusion_matrix(t, p, labels=labels).tolist(),
        })
    scorer = rouge_scorer.RougeScorer(["rouge1", "rouge2", "rougeL", "rougeLsum"], use_stemmer=True)
    out["rouge"] = []
    for c in cases.get("rouge", []):
        r = scorer.score_multi(c["targets"], c["prediction"])
        out["rouge"].append({k: [v.precision, v.recall, v.fmeasure] for k, v in r.items()})
    stemmer = porter.PorterStemmer()
    out["stems"] = [stemmer.stem(w) for w in cases.get("stems", [])]
    json.dump(out, sys.stdout)


if __name__ == "__main__":
    main()
