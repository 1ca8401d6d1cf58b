"""Quality benchmark on the real evaluation data in ../shared/eval, through the real
pipeline (Library.index, Library.search, AnswerEngine.ask) with the bundled models.

    python bench/quality.py [--quick | --smoke] [--backends torch,onnx,onnx-int8]

* Retrieval on SQuAD v1.1 dev (48 articles indexed as .txt files): recall@1, recall@5 and
  MRR@5, where a hit is a passage of the right article whose span covers a gold answer span.
* Retrieval on FinanceBench (real 10-K/10-Q PDFs): the same at page level (a hit is a
  passage on a gold evidence page of the right filing).
* Answers with the bundled chat model: accuracy (a gold answer contained in the answer,
  SQuAD-normalised), abstention on SQuAD 2.0 unanswerable questions, false refusals on
  answerable ones.
* Abstention threshold curve (retrieval only): for each threshold on the top passage's
  cosine similarity, the share of SQuAD 2.0 unanswerable questions and of questions from
  other collections that would abstain, against the share of answerable questions refused.

A table is printed and the JSON is written to bench/results/quality-*.json.
"""

from __future__ import annotations

import argparse
import os
import random
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import common  # noqa: E402
import corpus  # noqa: E402
import scoring  # noqa: E402
from common import REPO  # noqa: E402

from desktop.config import Paths, Settings, enforce_offline  # noqa: E402

enforce_offline()


MODES = {
    "smoke": dict(articles=2, squad_questions=20, fb_pages=0, answer_questions=1, unanswerable_questions=1,
                  v2_questions=40, other_questions=10, fb_answer_questions=0),
    "quick": dict(articles=48, squad_questions=500, fb_pages=250, answer_questions=40,
                  unanswerable_questions=40, v2_questions=None, other_questions=None, fb_answer_questions=0),
    "full": dict(articles=48, squad_questions=2000, fb_pages=1200, answer_questions=200,
                 unanswerable_questions=200, v2_questions=None, other_questions=None, fb_answer_questions=40),
}
THRESHOLDS = [round(0.10 + 0.025 * i, 3) for i in range(25)]  # 0.10 .. 0.70


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)


def embedder(backend: str | None = None):
    from desktop.rag.embeddings import Embedder

    e = Embedder(backend=backend, cache_dir=common.MODELS)
    e.load()
    return e


# ---------------------------------------------------------------- SQuAD retrieval
def squad_index(work: Path, emb, n_articles: int):
    from desktop.rag.library import Library

    articles = corpus.squad_articles()[:n_articles]
    lib = Library(Paths(work / f"squad-{emb.backend}"), Settings(), embedder=emb)
    s = lib.index(articles)
    assert not s.failed, s.failed
    return lib, {p.name for p in articles}, {"articles": len(articles), "chunks": s.chunks,
                                            "seconds": round(s.seconds, 1),
                                            "chunks_per_s": round(s.chunks / s.seconds, 1)}


def squad_hit_rank(passages, q) -> int | None:
    spans = [(s, s + len(a)) for s, a in zip(q["answer_starts_in_doc"], q["answers"], strict=True)]
    for rank, p in enumerate(passages, start=1):
        if Path(p.path).name == q["doc_file"] and any(p.char_start <= s and e <= p.char_end for s, e in spans):
            return rank
    return None


def metrics(ranks: list[int | None]) -> dict:
    n = len(ranks) or 1
    return {"recall_at_1": round(sum(1 for r in ranks if r == 1) / n, 4),
            "recall_at_5": round(sum(1 for r in ranks if r is not None and r <= 5) / n, 4),
            "mrr_at_5": round(sum(1 / r for r in ranks if r is not None and r <= 5) / n, 4),
            "questions": len(ranks)}


def squad_questions(titles: set[str], n: int) -> list[dict]:
    qa = [q for q in corpus.squad_qa() if q["doc_file"] in titles]
    rng = random.Random(7)
    return sorted(rng.sample(qa, min(n, len(qa))), key=lambda q: q["id"])


def squad_retrieval(lib, questions) -> dict:
    out = {}
    for mode in ("hybrid", "vector"):
        ranks = [squad_hit_rank(lib.search(q["question"], k=5, mode=mode), q) for q in questions]
        out[mode] = metrics(ranks)
    return out


# ---------------------------------------------------------------- FinanceBench
def financebench(work: Path, emb, max_pages: int):
    """Index the filings of as many questions as fit in ``max_pages`` (smallest first)."""
    from desktop.rag.library import Library

    loaders = corpus.eval_loaders()
    docs, qs = loaders.load_financebench(str(corpus.EVAL))
    paths = {d["doc_id"]: Path(d["path"]) for d in docs}
    pages = {k: corpus.pdf_pages(p) for k, p in paths.items()}
    unreadable = sorted(k for k, n in pages.items() if n is None)
    chosen: list[str] = []
    total = 0
    for doc in sorted((k for k in paths if pages[k] is not None), key=lambda k: pages[k]):
        if not any(doc in q["gold_doc_ids"] for q in qs):
            continue
        if total + pages[doc] > max_pages:
            continue
        chosen.append(doc)
        total += pages[doc]
    lib = Library(Paths(work / f"fb-{emb.backend}"), Settings(), embedder=emb)
    s = lib.index([paths[d] for d in chosen])
    questions = [q for q in qs if set(q["gold_doc_ids"]) <= set(chosen)]
    info = {"filings": len(chosen), "pages": s.pages, "chunks": s.chunks, "seconds": round(s.seconds, 1),
            "failed": s.failed, "questions": len(questions),
            "left_out_unreadable": {"filings": unreadable, "why": "pypdf could not open them"}}
    return lib, questions, info


def fb_hit_rank(passages, q) -> int | None:
    for rank, p in enumerate(passages, start=1):
        if Path(p.path).stem in q["gold_doc_ids"] and p.page is not None and (p.page - 1) in q["gold_pages"]:
            return rank
    return None


# ---------------------------------------------------------------- abstention curve
def top_similarity(lib, question: str, k: int) -> float:
    """What AnswerEngine compares with abstain_below: the best passage's cosine similarity."""
    passages = lib.search(question, k=k)
    return max((p.similarity or 0.0) for p in passages) if passages else 0.0


def threshold_curve(lib, titles: set[str], cfg: dict, k: int) -> dict:
    loaders = corpus.eval_loaders()
    _docs, v2 = loaders.load_squad_v2_subsets(str(corpus.EVAL))
    v2 = [q for q in v2 if set(q["gold_doc_ids"]) <= titles]
    if cfg["v2_questions"]:
        v2 = random.Random(3).sample(v2, min(len(v2), cfg["v2_questions"]))
    _d, fb = loaders.load_financebench(str(corpus.EVAL))
    _d, cran = loaders.load_cranfield(str(corpus.EVAL))
    other = [q["question"] for q in fb] + [q["question"] for q in cran]
    if cfg["other_questions"]:
        other = random.Random(4).sample(other, min(len(other), cfg["other_questions"]))
    log(f"abstention curve: {len(v2)} SQuAD 2.0 questions, {len(other)} questions about other collections")
    unans = [top_similarity(lib, q["question"], k) for q in v2 if not q["answers"]]
    ans = [top_similarity(lib, q["question"], k) for q in v2 if q["answers"]]
    off = [top_similarity(lib, q, k) for q in other]
    rows = []
    for t in THRESHOLDS:
        rows.append({"threshold": t,
                     "abstain_unanswerable": round(sum(s < t for s in unans) / max(1, len(unans)), 4),
                     "abstain_other_collection": round(sum(s < t for s in off) / max(1, len(off)), 4),
                     "false_refusal_answerable": round(sum(s < t for s in ans) / max(1, len(ans)), 4)})
    dist = {name: {"p10": round(common.percentile(v, 0.1), 3), "median": round(statistics.median(v), 3),
                   "p90": round(common.percentile(v, 0.9), 3)}
            for name, v in (("unanswerable", unans), ("answerable", ans), ("other_collection", off)) if v}
    return {"questions": {"unanswerable": len(unans), "answerable": len(ans), "other_collection": len(other)},
            "top_similarity": dist, "curve": rows,
            "other_collection_source": "FinanceBench questions and Cranfield queries against the SQuAD index"}


# ---------------------------------------------------------------- calibration
def half_of(qid: str) -> int:
    """0 = fitting half, 1 = reporting half (stable across runs)."""
    import hashlib

    return int(hashlib.sha256(str(qid).encode()).hexdigest(), 16) % 2


def signal_rows(lib, questions: list[tuple[str, str, int]], k: int) -> list[dict]:
    """The abstention signals of each (qid, question, label) through the real retrieval + evidence."""
    from desktop.rag.abstain import features
    from desktop.rag.answer import CANDIDATES
    from desktop.rag.evidence import select_evidence

    rows = []
    for i, (qid, text, label) in enumerate(questions, start=1):
        if i % 200 == 0:
            log(f"  signals {i}/{len(questions)}")
        ev = select_evidence(text, lib.search(text, k=CANDIDATES), lib.embedder, max_lines=k)
        rows.append({"qid": qid, "label": label, "x": list(features(ev)), "lines": len(ev.lines)})
    return rows


def fit_logistic(xs: list[list[float]], ys: list[int], weights: list[float], steps: int = 4000,
                 lr: float = 0.5, l2: float = 1e-3) -> tuple[list[float], float]:
    """Weighted logistic regression by gradient descent (numpy only)."""
    import numpy as np

    x = np.asarray(xs, dtype=np.float64)
    y = np.asarray(ys, dtype=np.float64)
    sw = np.asarray(weights, dtype=np.float64)
    sw = sw / sw.sum()
    w = np.zeros(x.shape[1])
    b = 0.0
    for _ in range(steps):
        p = 1 / (1 + np.exp(-(x @ w + b)))
        g = (p - y) * sw
        w -= lr * (x.T @ g + l2 * w)
        b -= lr * g.sum()
    return [round(float(v), 3) for v in w], round(float(b), 3)


def calibrate(lib, titles: set[str], k: int, cfg: dict | None = None) -> dict:
    """Fit the abstention model on one half, report the other half, for every threshold."""
    from desktop.rag.abstain import probability

    loaders = corpus.eval_loaders()
    _docs, v2 = loaders.load_squad_v2_subsets(str(corpus.EVAL))
    v2 = [q for q in v2 if set(q["gold_doc_ids"]) <= titles]
    _d, fb = loaders.load_financebench(str(corpus.EVAL))
    _d, cran = loaders.load_cranfield(str(corpus.EVAL))
    other = fb + cran
    cfg = cfg or {}
    if cfg.get("v2_questions"):
        v2 = random.Random(3).sample(v2, min(len(v2), cfg["v2_questions"]))
    if cfg.get("other_questions"):
        other = random.Random(4).sample(other, min(len(other), cfg["other_questions"]))
    qs = [(q["qid"], q["question"], 1 if q["answers"] else 0) for q in v2]
    qs += [(f"off-{q['qid']}", q["question"], -1) for q in other]
    log(f"calibration: {len(qs)} questions")
    rows = signal_rows(lib, qs, k)
    fit = [r for r in rows if half_of(r["qid"]) == 0]
    test = [r for r in rows if half_of(r["qid"]) == 1]
    # each kind weighs the same in the fit: answerable, adversarial unanswerable, off-collection
    counts = {lab: sum(1 for r in fit if r["label"] == lab) for lab in (1, 0, -1)}
    weights = [1.0 / max(1, counts[r["label"]]) for r in fit]
    w, b = fit_logistic([r["x"] for r in fit], [1 if r["label"] == 1 else 0 for r in fit], weights)
    curve = []
    for t in [round(0.05 * i, 2) for i in range(1, 20)]:
        def share(label, rows=test, t=t):
            group = [r for r in rows if r["label"] == label]
            hits = sum(1 for r in group if probability(r["x"], w, b) < t or not r["lines"])
            return interval(hits, len(group))
        curve.append({"threshold": t, "abstain_unanswerable": share(0), "abstain_other_collection": share(-1),
                      "false_refusal_answerable": share(1)})
    return {"weights": w, "bias": b, "features": ["top_similarity", "best_cosine", "best_coverage"],
            "fit_questions": counts,
            "report_questions": {lab: sum(1 for r in test if r["label"] == lab) for lab in (1, 0, -1)},
            "curve": curve}


def interval(hits: int, n: int) -> dict:
    """A share with its Wilson 95% interval."""
    if n == 0:
        return {"value": None, "ci95": None, "n": 0}
    z = 1.96
    p = hits / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * ((p * (1 - p) / n + z * z / (4 * n * n)) ** 0.5) / (1 + z * z / n)
    return {"value": round(p, 4), "ci95": [round(max(0.0, centre - half), 4), round(min(1.0, centre + half), 4)],
            "n": n}


def show(share: dict) -> str:
    if not share or share.get("value") is None:
        return "-"
    lo, hi = share["ci95"]
    return f"{share['value']:.3f} [{lo:.3f}-{hi:.3f}]"


# ---------------------------------------------------------------- answers
def answers(lib, model, questions: list[dict], settings: Settings, by_value: bool = False) -> list[dict]:
    """``by_value``: a gold answer that is one figure is compared by value (bench/scoring.py)."""
    from desktop.rag.answer import AnswerEngine

    loaders = corpus.eval_loaders()
    engine = AnswerEngine(lib, model, settings.passages_per_answer, settings.abstain_below,
                          settings.temperature, settings.max_answer_tokens)
    out = []
    for i, q in enumerate(questions, start=1):
        if i % 20 == 0:
            log(f"  answer {i}/{len(questions)}")
        stream = engine.ask(q["question"])
        for _ in stream:
            pass
        a = stream.result
        right = (scoring.is_correct(a.text, q["answers"], loaders.contains_answer) if by_value
                 else loaders.contains_answer(a.text, q["answers"]))
        figure = by_value and any(scoring.gold_figure(g) is not None for g in q["answers"])
        out.append({"qid": q["qid"], "answerable": bool(q["answers"]), "abstained": a.abstained,
                    "mode": a.mode, "confidence": a.confidence, "gold_is_figure": figure,
                    "correct": bool(q["answers"]) and not a.abstained and right,
                    "draft": a.unsupported[:200], "answer": a.text[:300],
                    "first_token_s": round(a.timings.get("first_token_s", 0.0), 3),
                    "decode_tok_s": round(a.timings.get("decode_tok_s", 0.0), 1),
                    "seconds": round(a.timings.get("total_s", 0.0), 2)})
    return out


def answer_metrics(results: list[dict]) -> dict:
    answerable = [r for r in results if r["answerable"]]
    unanswerable = [r for r in results if not r["answerable"]]
    out = {}
    if answerable:
        out["accuracy"] = interval(sum(r["correct"] for r in answerable), len(answerable))
        out["false_refusal_rate"] = interval(sum(r["abstained"] for r in answerable), len(answerable))
        out["quoted_rate"] = interval(sum(r["mode"] == "quoted" for r in answerable), len(answerable))
        out["answerable_questions"] = len(answerable)
        figures = [r for r in answerable if r.get("gold_is_figure")]
        if figures:
            out["figure_accuracy"] = interval(sum(r["correct"] for r in figures), len(figures))
            out["figure_questions"] = len(figures)
        ttft = [r["first_token_s"] for r in answerable if r["first_token_s"]]
        if ttft:
            out["first_token_s_median"] = round(statistics.median(ttft), 3)
        decode = [r.get("decode_tok_s") for r in answerable if r.get("decode_tok_s")]
        if decode:
            out["decode_tok_s_median"] = round(statistics.median(decode), 1)
    if unanswerable:
        out["abstention_rate"] = interval(sum(r["abstained"] for r in unanswerable), len(unanswerable))
        out["unanswerable_questions"] = len(unanswerable)
    return out


# ---------------------------------------------------------------- main
def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    group = parser.add_mutually_exclusive_group()
    group.add_argument("--quick", action="store_true")
    group.add_argument("--smoke", action="store_true", help="seconds: tiny inputs (CI)")
    parser.add_argument("--backends", help="also compare these embedding backends (comma list)")
    parser.add_argument("--no-llm", action="store_true", help="retrieval and the threshold curve only")
    parser.add_argument("--calibrate", action="store_true",
                        help="fit the abstention model on half the questions, report the other half")
    parser.add_argument("--model", default=None, help="bundled-qwen (default), bundled-qwen-1.5b, bundled-gemma")
    parser.add_argument("--answers-only", action="store_true", help="skip retrieval figures (faster)")
    parser.add_argument("--cosine-curve", action="store_true",
                        help="also the older curve of abstention against the top passage's cosine alone")
    args = parser.parse_args(argv)
    mode = "smoke" if args.smoke else "quick" if args.quick else "full"
    cfg = MODES[mode]
    started = time.perf_counter()
    work = Path(tempfile.mkdtemp(prefix="sprig-quality-"))
    os.environ["SPRIG_HOME"] = str(work / "home")
    settings = Settings()
    results: dict = {"mode": mode, "config": cfg, "machine": common.machine(),
                     "settings": {"chunk_tokens": settings.chunk_tokens, "chunk_overlap": settings.chunk_overlap,
                                  "passages_per_answer": settings.passages_per_answer,
                                  "abstain_below": settings.abstain_below, "model": settings.model,
                                  "temperature": settings.temperature}}
    rows: list[list] = []
    try:
        emb = embedder()
        results["embedding_backend"] = {"backend": emb.backend, "model_id": emb.model_id}
        log(f"indexing {cfg['articles']} SQuAD articles ({emb.backend})")
        lib, titles, info = squad_index(work, emb, cfg["articles"])
        results["squad_index"] = info
        questions = squad_questions(titles, cfg["squad_questions"])
        log(f"SQuAD retrieval: {len(questions)} questions")
        results["squad_retrieval"] = {} if args.answers_only else squad_retrieval(lib, questions)
        for m, r in results["squad_retrieval"].items():
            rows.append([f"SQuAD v1.1 retrieval, {m}", r["recall_at_1"], r["recall_at_5"], r["mrr_at_5"],
                         r["questions"]])
        backends = [b for b in (args.backends.split(",") if args.backends else []) if b and b != emb.backend]
        if backends:
            comparison = {emb.backend: {**results["squad_retrieval"], "index": info}}
            for b in backends:
                other = embedder(b)
                log(f"backend comparison: indexing with {b}")
                olib, _t, oinfo = squad_index(work, other, cfg["articles"])
                comparison[b] = {**squad_retrieval(olib, questions), "index": oinfo}
                olib.close()
            results["backend_comparison"] = comparison
            for b, r in comparison.items():
                rows.append([f"  backend {b}: hybrid / vector", f"{r['hybrid']['recall_at_1']} / {r['vector']['recall_at_1']}",
                             f"{r['hybrid']['recall_at_5']} / {r['vector']['recall_at_5']}",
                             f"{r['hybrid']['mrr_at_5']} / {r['vector']['mrr_at_5']}",
                             f"{r['index']['chunks_per_s']} chunks/s"])
        if args.calibrate:
            results["calibration"] = calibrate(lib, titles, settings.passages_per_answer, cfg)
            c = results["calibration"]
            print(f"\nfitted weights {c['weights']} bias {c['bias']} (features {c['features']}); "
                  f"fit {c['fit_questions']}, report {c['report_questions']}")
            common.print_table([[r["threshold"], show(r["abstain_unanswerable"]), show(r["abstain_other_collection"]),
                                 show(r["false_refusal_answerable"])] for r in c["curve"]],
                               ["p threshold", "abstain: SQuAD 2.0 unanswerable", "abstain: other collection",
                                "false refusal: answerable"])
        if not args.answers_only and not args.calibrate and args.cosine_curve:
            results["abstention_curve"] = threshold_curve(lib, titles, cfg, settings.passages_per_answer)

        fb_lib = fb_questions = None
        if cfg["fb_pages"] and not (args.answers_only and not cfg["fb_answer_questions"]):
            log(f"FinanceBench: indexing up to {cfg['fb_pages']} pages")
            fb_lib, fb_questions, fb_info = financebench(work, emb, cfg["fb_pages"])
            ranks = [fb_hit_rank(fb_lib.search(q["question"], k=5), q) for q in fb_questions]
            results["financebench_retrieval"] = {**metrics(ranks), "index": fb_info}
            r = results["financebench_retrieval"]
            rows.append([f"FinanceBench evidence pages ({fb_info['filings']} filings, {fb_info['pages']} p.)",
                         r["recall_at_1"], r["recall_at_5"], r["mrr_at_5"], r["questions"]])

        if not args.no_llm:
            from desktop.models.bundled import resolve_model_path
            from desktop.models.llm import LocalModel

            name = args.model or settings.model
            model = LocalModel(resolve_model_path(name, common.MODELS), n_ctx=settings.context_size)
            model.load()
            results["answer_model"] = name
            loaders = corpus.eval_loaders()
            _d, v1 = loaders.load_squad_v11(str(corpus.EVAL))
            _d, v2 = loaders.load_squad_v2_subsets(str(corpus.EVAL))
            rng = random.Random(9)
            # only questions of the reporting half: the abstention model never saw them
            ans_q = rng.sample([q for q in v1 if set(q["gold_doc_ids"]) <= titles and half_of(q["qid"]) == 1],
                               cfg["answer_questions"])
            una_q = rng.sample([q for q in v2 if not q["answers"] and set(q["gold_doc_ids"]) <= titles
                                and half_of(q["qid"]) == 1], cfg["unanswerable_questions"])
            log(f"answers: {len(ans_q)} answerable + {len(una_q)} unanswerable SQuAD questions")
            res = answers(lib, model, ans_q + una_q, settings)
            results["squad_answers"] = {**answer_metrics(res), "runs": res}
            m = results["squad_answers"]
            rows.append(["SQuAD answers: accuracy / false refusals", show(m.get("accuracy")),
                         show(m.get("false_refusal_rate")), f"quoted {show(m.get('quoted_rate'))}",
                         m.get("answerable_questions")])
            rows.append(["SQuAD 2.0 unanswerable: abstention", show(m.get("abstention_rate")), "", "",
                         m.get("unanswerable_questions")])
            rows.append(["time to first token (s) / decode (tok/s), medians", m.get("first_token_s_median"),
                         m.get("decode_tok_s_median"), "", ""])
            if fb_lib is not None and cfg["fb_answer_questions"]:
                fq = random.Random(5).sample(fb_questions, min(len(fb_questions), cfg["fb_answer_questions"]))
                log(f"answers: {len(fq)} FinanceBench questions")
                res = answers(fb_lib, model, fq, settings, by_value=True)
                results["financebench_answers"] = {**answer_metrics(res), "runs": res}
                m = results["financebench_answers"]
                rows.append(["FinanceBench answers: accuracy / false refusals", show(m.get("accuracy")),
                             show(m.get("false_refusal_rate")), f"quoted {show(m.get('quoted_rate'))}",
                             m.get("answerable_questions")])
                if m.get("figure_questions"):
                    rows.append(["  of them, a single figure: correct by value", show(m.get("figure_accuracy")),
                                 "", "", m.get("figure_questions")])
            model.close()
        if fb_lib is not None:
            fb_lib.close()
        lib.close()
    finally:
        results["seconds"] = round(time.perf_counter() - started, 1)
        path = common.write_json(f"quality-{mode}", results)
        shutil.rmtree(work, ignore_errors=True)
    print()
    print(f"Sprig quality benchmark ({mode}) on {common.describe(results['machine'])}")
    print(f"embedding backend {results['embedding_backend']['backend']}; SQuAD index "
          f"{results['squad_index']['chunks']} chunks")
    common.print_table(rows, ["measure", "recall@1 / value", "recall@5", "MRR@5", "questions"])
    curve = results.get("abstention_curve")
    if curve is None:
        print(f"\n{results['seconds']:.0f} s; JSON: {path.relative_to(REPO) if path.is_relative_to(REPO) else path}")
        return 0
    print(f"\nAbstention threshold (top passage cosine; current default {settings.abstain_below}); "
          f"questions: {curve['questions']}")
    common.print_table([[r["threshold"], r["abstain_unanswerable"], r["abstain_other_collection"],
                         r["false_refusal_answerable"]] for r in curve["curve"]],
                       ["threshold", "abstain: SQuAD 2.0 unanswerable", "abstain: other collection",
                        "false refusal: answerable"])
    print(f"\n{results['seconds']:.0f} s; JSON: {path.relative_to(REPO) if path.is_relative_to(REPO) else path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
