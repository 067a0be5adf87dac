"""pgkeras: policy gradients in Keras with the cross-entropy trick.

REINFORCE written as `model.fit(x, one_hot(actions), sample_weight=advantages)` with
`loss="categorical_crossentropy"`, applied to Atari Pong from pixels.
"""

__version__ = "0.1.0"
