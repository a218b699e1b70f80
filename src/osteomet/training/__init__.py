"""The one training core of every network here: the UNETR, the 3D ResNet and the CT slice models.

Resume, early stopping, the learning-rate schedule, per-epoch seeding and hard-negative mining
were once written in each trainer and had drifted apart (three names for the best score in a
checkpoint, three behaviours without ``last.pt``); they are written once here, so a fix or a
rule reaches every trainer. A trainer keeps only what is its own: data, network, loss,
validation metric.

- :mod:`.checkpoint`: run-folder checkpoints, the refusal to train over a run, resume.
- :mod:`.early_stopping`: best score, patience, the smoothed selection rule.
- :mod:`.lr_schedule`: the learning rate of an epoch as a pure function.
- :mod:`.seeds`: every random draw a function of (seed, epoch).
- :mod:`.step`: one optimisation step.
- :mod:`.loop`: the epoch loop that ties them together.
- :mod:`.sampling` and :mod:`.hard_negatives`: epochs drawn from a sampler, mined hard negatives.

The modules import torch at their top: import them inside the functions that train or
predict, never from a CLI module's top level (``osteomet --help`` stays free of torch).
"""
