"""Text generation on vLLM: the gateway's engine (engine.py; stream.py turns
vLLM's streamed chunks into events; supervisor.py runs or watches the server), the wire format of a row's
modulation (xargs.py) and the logits processor that applies it inside vLLM's sampler (processor.py).

processor.py and xargs.py run inside vLLM's own environment: they import only torch, numpy, vllm and
`service.modulation` (through the generation package's light modules), never the web layer.
"""
