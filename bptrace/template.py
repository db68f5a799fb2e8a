"""The scenario `bptrace new` writes: a small complete problem, every key commented."""

NEW_SCENARIO = """\
# yaml-language-server: $schema=bptrace.schema.json
# (editors complete and check keys from that schema: make it with `bptrace schema -o bptrace.schema.json`)
# A bptrace scenario: the network, its numbers, and where the backward pass starts.
# Run it with `bptrace run THIS_FILE`; every key is described in the README.
bptrace: 1
name: my problem — 5x5 input, 2x2 conv, 2x2 max-pool, sigmoid, dense(2)

conventions:
  kernel: correlation     # or convolution (the kernel is turned by 180° first)
  flatten: row            # or column (each map scanned column by column)
  index_base: 0           # or 1, how indices are printed and written below

input: [[0.1, 0.2, 0.3, 0.4, 0.5],
        [0.5, 0.6, 0.7, 0.8, 0.9],
        [0.9, 1.0, 0.1, 0.2, 0.3],
        [0.3, 0.4, 0.5, 0.6, 0.7],
        [0.2, 0.8, 0.4, 0.1, 0.6]]

layers:
  - {type: conv, name: c1, kernel: [[0.1, -0.2], [0.3, 0.4]], bias: 0.0}
  - {type: maxpool, name: p1, size: 2}
  - {type: sigmoid, name: s1}
  - {type: flatten, name: f}
  - {type: dense, name: h, weights: [[0.5, -0.5, 0.25, 0.1], [0.2, 0.3, -0.4, 0.6]], bias: [0, 0]}

# where the backward pass starts: a given error at a layer's output ...
upstream:
  layer: h
  delta: [0.25, -0.15]
# ... or a loss with a target (use one of the two):
# loss: {type: half_sse, target: [1, 0]}   # half_sse, sse, mse, cross_entropy, bce, l1; sum, mean (no target)

# learning_rate: 0.1        # adds the SGD-updated parameters to the trace
# optimizer: {type: adam, lr: 0.01}   # or torch.optim's sgd (momentum...), adam, rmsprop, adagrad
# regularization: {l2: 0.01}          # adds (λ/2)·Σ w² to the loss
# steps: 2                  # training steps on the same data; names become step1.…, step2.…
# given:                    # pin forward values to the rounded numbers your problem prints
#   s1.out: [[0.58, 0.57], [0.65, 0.55]]
# rounding: {decimals: 4, mode: half_up, apply: [p1.delta]}
# expected:                 # your answers, for `bptrace check`
#   c1.grad.kernel[0,0]: 0.0123
"""
