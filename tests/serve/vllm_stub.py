"""A stand-in for vLLM's OpenAI server (standard library only) for tests of the managed-process side of the vllm backend.

Installed by tests as `vllm/entrypoints/openai/api_server.py` on a throwaway PYTHONPATH, so Tuneloom's launcher runs it
exactly as it runs vLLM. It takes the arguments the backend passes (anything else is an argparse error, as in
vLLM) and answers what the backend uses of vLLM's OpenAI server: /health, /v1/load_lora_adapter and streamed
/v1/completions on token ids. The text it streams names the model (base or LoRA) so tests see which answered;
it is a protocol double, not a model.
"""

from __future__ import annotations

import argparse
import json
import signal
import sys
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

TOKEN_DELAY_S = 0.005


def parse(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="vllm.entrypoints.openai.api_server")
    for flag in ("--model", "--served-model-name", "--host", "--dtype", "--generation-config", "--uvicorn-log-level"):
        parser.add_argument(flag, required=flag in ("--model", "--served-model-name"))
    for flag in ("--port", "--max-model-len", "--max-num-seqs", "--max-loras", "--max-lora-rank", "--max-cpu-loras"):
        parser.add_argument(flag, type=int)
    for flag in ("--enable-lora", "--disable-uvicorn-access-log", "--no-enable-log-requests", "--trust-remote-code"):
        parser.add_argument(flag, action="store_true")
    parser.add_argument("--enforce-eager", action="store_true")
    parser.add_argument("--lora-modules", nargs="+", default=[])
    return parser.parse_args(argv)


class Handler(BaseHTTPRequestHandler):
    models: dict[str, str] = {}

    def log_message(self, format: str, *args: object) -> None:  # quiet: the base class logs every request
        pass

    def _json(self, status: int, body: object) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self) -> None:
        self._json(200, {}) if self.path == "/health" else self._json(404, {"error": "no route"})

    def do_POST(self) -> None:
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        if self.path == "/v1/load_lora_adapter":
            if body["lora_name"] in self.models:
                return self._json(400, {"error": {"message": f"The lora adapter '{body['lora_name']}' has already been loaded."}})
            if not Path(body["lora_path"], "adapter_config.json").is_file():
                return self._json(404, {"error": {"message": f"no adapter at {body['lora_path']}"}})
            self.models[body["lora_name"]] = body["lora_path"]
            return self._json(200, {})
        if self.path != "/v1/completions" or not body.get("stream") or not isinstance(body["prompt"][0], int):
            return self._json(400, {"error": {"message": "the stub takes streamed completions on token ids"}})
        if body["model"] not in self.models:
            return self._json(404, {"error": {"message": f"The model `{body['model']}` does not exist."}})
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.end_headers()
        for i in range(body["max_tokens"]):
            time.sleep(TOKEN_DELAY_S)
            last = i == body["max_tokens"] - 1
            choice = {"index": 0, "text": f" {body['model']}-{i}", "finish_reason": "length" if last else None}
            usage = {"prompt_tokens": len(body["prompt"]), "completion_tokens": i + 1}
            self.wfile.write(f"data: {json.dumps({'choices': [choice], 'usage': usage})}\n\n".encode())
            self.wfile.flush()
        self.wfile.write(b"data: [DONE]\n\n")


def main() -> None:
    args = parse(sys.argv[1:])
    Handler.models = {args.served_model_name: args.model, **dict(m.split("=", 1) for m in args.lora_modules)}
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    time.sleep(0.3)  # vLLM takes a while before /health answers
    ThreadingHTTPServer((args.host, args.port), Handler).serve_forever()


if __name__ == "__main__":
    main()
