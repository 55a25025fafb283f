import logging

# torchao (the JanusVLN quantisation backend, requirements.txt) is imported by transformers.quantizers and
# diffusers.quantizers whenever it is installed: on a CPU-only torch its import logs a warning per CUDA-only
# extension it cannot load ("Failed to load .../_C_mxfp8...so"), torch's pytree a deprecation per enum it
# registers, and diffusers 0.42 that it cannot find torchao's old tensor classes (used only to unpickle
# torchao-serialised diffusers checkpoints, which nothing here loads). None concerns us (the quantised paths we
# use are pure PyTorch): kept out of every log.
for _name in ("torchao", "torch.utils._pytree", "diffusers.quantizers.torchao.torchao_quantizer"):
    logging.getLogger(_name).setLevel(logging.ERROR)
