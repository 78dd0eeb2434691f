"""The server a user would write instead of aimserve: FastAPI + transformers, one request per forward.

No batching, no tenants, no tiers, no Redis: the baseline of `bench.http`. It answers the same request shape
as ``POST /v1/classify`` (``{"inputs": ["text"]}`` or ``{"inputs": [{"image": "<base64>"}]}``) with the top-1.

Run: ``python -m bench.naive_peer <model dir> <port>``.
"""

import base64
import io
import sys

import torch
import transformers as tf
import uvicorn
from fastapi import FastAPI
from PIL import Image

folder, port = sys.argv[1], int(sys.argv[2])
config = tf.AutoConfig.from_pretrained(folder)
is_image = getattr(config, "num_channels", None) is not None
Model = tf.AutoModelForImageClassification if is_image else tf.AutoModelForSequenceClassification
model = Model.from_pretrained(folder).eval()
pre = (tf.AutoImageProcessor if is_image else tf.AutoTokenizer).from_pretrained(folder)
app = FastAPI()


@app.post("/v1/classify")
def classify(body: dict) -> dict:  # type: ignore[type-arg]
    x = body["inputs"][0]
    if is_image:
        image = Image.open(io.BytesIO(base64.b64decode(x["image"])))
        enc = pre(images=image.convert("L" if config.num_channels == 1 else "RGB"), return_tensors="pt")
    else:
        enc = pre(x, return_tensors="pt", truncation=True)
    with torch.inference_mode():
        probs = model(**enc).logits.softmax(-1)[0]
    i = int(probs.argmax())
    return {"results": [{"label": config.id2label[i], "score": float(probs[i])}]}


if __name__ == "__main__":
    uvicorn.run(app, host="127.0.0.1", port=port, log_level="warning")
