"""Close the feedback loop once on the Acme support example, end to end.

The script plays the users and the reviewer:

1. makes sure `support-qa` has a production version (registers the latest run, or trains a quick one);
2. starts `tuneloom serve` and sends questions the training data never saw (feedback_questions.jsonl)
   through the official `openai` client;
3. rates each answer: a wrong one (token F1 below --wrong-below against the reference answer) gets a
   thumbs down with the reference answer as its correction, a right one a thumbs up;
4. reviews: an auto-accept rule trusts the reviewer's API key (`feedback.auto_accept`);
5. runs `tuneloom iterate` (exit code and summary as a cron job would see them);
6. asks the corrected questions again: the running server answers from version 2 if it was promoted;
7. drills a rollback (production back to version 1, the server follows, then forward again);
8. prints the before/after table: corrected questions, and the golden test set from iterate's evaluation.

Run from the repository root (a few minutes on 2 CPU cores):

    .venv/bin/python examples/acme-support/loop.py --questions 10 --steps 15
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
PROJECT_FILE = HERE / "tuneloom.yaml"
TASK = "support-qa"
REVIEWER = "loop-reviewer"  # the API key name the auto-accept rule trusts


EXTRA: list[str] = []  # --set overrides from the command line


def overrides(steps: int) -> list[str]:
    """The example's settings for a quick turn: a short training run, a small evaluation, the review rule."""
    t = f"{TASK}:"
    return [
        t + f"feedback.auto_accept=[{{name: loop, key_names: [{REVIEWER}]}}]",
        t + "feedback.held_out=0.25",
        t + "iterate.min_new_rows=4",
        t + "iterate.feedback_weight=4",
        t + "iterate.golden_metrics=[token_f1]",
        t + "iterate.golden_max_drop=0.02",
        t + f"train.max_steps={steps}",
        t + "eval.max_examples=10",
        t + "eval.max_new_tokens=40",
        t + "eval.forgetting_check=false",
        t + "eval.baselines=false",
        *EXTRA,
    ]


def ensure_production(project: Any, steps: int) -> int:
    """support-qa's production version: the latest finished run registered and promoted, or a quick one trained."""
    from tuneloom.loop import run_project
    from tuneloom.registry.lookup import production_for, registry_for
    from tuneloom.workspace import Workspace

    task = project.config.task(TASK)
    found = production_for(project, task)
    if found is not None:
        return found.version
    try:
        run_dir = Workspace(project.workspace).run_dir(f"latest:{TASK}")
    except FileNotFoundError:
        print(f"no {TASK} run yet: training a quick version 1 ({steps} steps)")
        run_dir = Path(run_project(project, [TASK]).tasks[0].run_dir)
    registry = registry_for(project)
    version = registry.register_run(run_dir, TASK).version
    registry.promote(TASK, version, force=True, reason="loop.py: the starting point of the example loop")
    return version


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start_server(port: int) -> subprocess.Popen[bytes]:
    """`tuneloom serve` on the example project (its log goes to workspace/loop-serve.log)."""
    log = open(HERE / "workspace" / "loop-serve.log", "wb")  # kept open for the server's lifetime
    env = {**os.environ, "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "2")}
    cmd = [sys.executable, "-m", "tuneloom.cli", "serve", "-c", str(PROJECT_FILE), "--port", str(port)]
    return subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env)


def wait_ready(client: Any, server: subprocess.Popen[bytes], timeout_s: float = 300) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise SystemExit(f"the server stopped (exit {server.returncode}); see {HERE / 'workspace' / 'loop-serve.log'}")
        try:
            client.models.list()
            return
        except Exception:  # not listening yet, or still loading: poll again
            time.sleep(1)
    raise SystemExit("the server did not become ready in time")


def ask(client: Any, rows: list[dict[str, str]], model: str) -> list[dict[str, Any]]:
    """Each question through the OpenAI client; the answer, its completion id and the version that answered."""
    from tuneloom.evaluate.metrics import token_f1

    out = []
    for row in rows:
        reply = client.chat.completions.create(
            model=model,
            messages=[{"role": "user", "content": row["question"]}],
            max_tokens=48,
            temperature=0,
            extra_headers={"X-Request-Id": row["id"]},
        )
        text = reply.choices[0].message.content or ""
        out.append({**row, "completion_id": reply.id, "served": reply.system_fingerprint, "f1": token_f1(text, row["answer"])})
    return out


def rate(client: Any, answers: list[dict[str, Any]], wrong_below: float) -> list[dict[str, Any]]:
    """Thumbs down with the reference answer as correction for wrong answers, thumbs up for right ones."""
    wrong = []
    for a in answers:
        body: dict[str, Any] = {"completion_id": a["completion_id"], "rating": "up", "tags": ["loop"]}
        if a["f1"] < wrong_below:
            body.update(rating="down", correction=a["answer"])
            wrong.append(a)
        client.post("/feedback", cast_to=object, body=body)
    return wrong


def run_iterate(steps: int) -> tuple[int, dict[str, Any]]:
    """`tuneloom iterate` as a cron job runs it: its exit code and its JSON summary."""
    cmd = [sys.executable, "-m", "tuneloom.cli", "iterate", "-c", str(PROJECT_FILE), "--task", TASK, "--json"]
    for item in overrides(steps):
        cmd += ["--set", item]
    done = subprocess.run(cmd, stdout=subprocess.PIPE, text=True)
    try:
        return done.returncode, json.loads(done.stdout)
    except json.JSONDecodeError:
        raise SystemExit(f"tuneloom iterate failed (exit {done.returncode}): {done.stdout[-2000:]}") from None


def served_now(client: Any, row: dict[str, str], want: str, ttl_s: float) -> str:
    """The version answering `support-qa` once the alias change has reached the server (after serve.alias_ttl_s)."""
    deadline = time.monotonic() + ttl_s + 10
    served = ""
    while time.monotonic() < deadline:
        served = ask(client, [row], TASK)[0]["served"]
        if served == want:
            break
        time.sleep(0.5)
    return served


def mean(values: list[float]) -> float:
    return sum(values) / len(values) if values else float("nan")


def review(project: Any) -> None:
    """The review step: new feedback proposed; the auto-accept rule accepts the trusted reviewer's corrections."""
    from tuneloom.feedback import accounting, propose

    proposed = propose(project, TASK)
    counts = accounting(project, TASK)
    print(f"review: {proposed.queued} queued, {proposed.auto_accepted} auto-accepted by rule 'loop'")
    print(f"accounting: {counts.equation()} ({'holds' if counts.holds else 'DOES NOT HOLD'})")


def drill(client: Any, project: Any, row: dict[str, str], version: int, ttl_s: float) -> None:
    """A forced rollback: production back to the previous version, the server follows, then forward again."""
    from tuneloom.registry.lookup import registry_for

    registry = registry_for(project)
    back = registry.rollback(TASK, reason="loop.py rollback drill")
    print(
        f"drill: production rolled back {back.from_version} -> {back.to_version}; "
        f"server now answers from {served_now(client, row, f'{TASK}:{back.to_version}', ttl_s)}"
    )
    registry.promote(TASK, version, reason="loop.py rollback drill over")
    print(f"drill: version {version} restored; server answers from {served_now(client, row, f'{TASK}:{version}', ttl_s)}")


def table(before: list[dict[str, Any]], after: list[dict[str, Any]], summary: dict[str, Any]) -> None:
    print("\nbefore / after")
    print(
        f"  corrected questions ({len(before)}), token F1 vs the reference answers: "
        f"{mean([a['f1'] for a in before]):.3f} ({before[0]['served'] if before else '-'}) -> "
        f"{mean([a['f1'] for a in after]):.3f} ({after[0]['served'] if after else '-'})"
    )
    for change in summary.get("golden", []):
        print(
            f"  golden test set {change['metric']}: {change['before']:.3f} ({change['reference']}) -> {change['after']:.3f} "
            f"(version {summary.get('version')})"
        )
    for change in summary.get("feedback_slice", []):
        if change["metric"] in ("token_f1", "rouge_l"):
            print(f"  held-out feedback {change['metric']}: {change['before']:.3f} -> {change['after']:.3f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--questions", type=int, default=10, help="How many of feedback_questions.jsonl to ask.")
    parser.add_argument("--steps", type=int, default=15, help="Training steps of the retrained version.")
    parser.add_argument("--wrong-below", type=float, default=0.5, help="Token F1 under which an answer is wrong.")
    parser.add_argument("--set", action="append", default=[], help="More overrides, e.g. support-qa:train.batch_size=4.")
    args = parser.parse_args()
    EXTRA.extend(args.set)

    from openai import OpenAI

    from tuneloom.config import load_project
    from tuneloom.serve.auth import KeyStore, keys_path

    project = load_project(PROJECT_FILE, overrides(args.steps))
    version = ensure_production(project, args.steps)
    rows = [json.loads(line) for line in (HERE / "feedback_questions.jsonl").read_text().splitlines()][: args.questions]
    _, key = KeyStore(keys_path(project.workspace)).create([TASK], name=REVIEWER)
    port, ttl_s = free_port(), project.config.serve.alias_ttl_s
    server = start_server(port)
    client = OpenAI(base_url=f"http://127.0.0.1:{port}/v1", api_key=key, timeout=300)
    try:
        wait_ready(client, server)
        print(f"serving {TASK} version {version} on port {port}; asking {len(rows)} questions")
        wrong = rate(client, ask(client, rows, TASK), args.wrong_below)
        print(f"{len(wrong)} of {len(rows)} answers wrong (token F1 < {args.wrong_below}): corrected with the reference answers")
        review(project)
        code, summary = run_iterate(args.steps)
        print(f"tuneloom iterate: exit code {code}, outcome {summary['outcome']}: {summary['reason']}")
        for failure in summary.get("gate_failures", []):
            print(f"  gate: {failure}")
        new = summary.get("version")
        model = TASK if summary["outcome"] == "promoted" else f"{TASK}:{new}" if new else TASK
        if summary["outcome"] == "promoted":
            print(f"server answers from {served_now(client, rows[0], f'{TASK}:{new}', ttl_s)} without a restart")
        after = ask(client, wrong, model)
        table(wrong, after, summary)
        if summary["outcome"] == "promoted":
            drill(client, project, rows[0], new, ttl_s)
    finally:
        server.terminate()
        server.wait(timeout=60)


if __name__ == "__main__":
    main()
