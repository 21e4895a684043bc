"""`eval.judge` in the project file: evaluate_run asks a (local) OpenAI-compatible judge about each side."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
import yaml

from tests.conftest import CHAT_TASK, write_project
from tuneloom.config import load_project
from tuneloom.evaluate import evaluate_run
from tuneloom.train import train_task

pytestmark = pytest.mark.timeout(300)


@pytest.fixture
def judge_url():
    seen: list[str] = []

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args):
            pass

        def do_POST(self):
            body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            seen.append(body["messages"][-1]["content"])
            if len(seen) > 20:  # bounded: the test sends 4
                self.send_response(500)
                self.end_headers()
                return
            data = json.dumps(
                {"choices": [{"message": {"role": "assistant", "content": '{"score": 3, "reason": "ok"}'}}]}
            ).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}/v1", seen
    finally:
        httpd.shutdown()
        httpd.server_close()


def test_judge_scores_reach_eval_json_and_the_comparison(tmp_path, tiny_llama_dir, tiny_bert_dir, judge_url):
    url, seen = judge_url
    config = write_project(tmp_path, tiny_llama_dir, tiny_bert_dir, max_steps=1)
    data = yaml.safe_load(config.read_text())
    data["tasks"][0]["eval"].update(judge={"url": url, "model": "local-judge", "max_examples": 2}, forgetting_check=False)
    config.write_text(yaml.safe_dump(data, sort_keys=False))
    result = train_task(load_project(config), CHAT_TASK)
    ev = evaluate_run(result.run_dir)
    assert len(seen) == 4  # 2 examples x (base, tuned)
    assert ev.judge["base"] == {"mean": 3.0, "n_scored": 2, "n_failed": 0}
    assert ev.comparison["judge_score"] == {"base": 3.0, "tuned": 3.0, "delta": 0.0}
    assert "forgetting" not in ev
