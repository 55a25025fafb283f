"""Training the SparseVideoNav action head: cached imagined futures, labels, the accelerate trainer.

No rclpy here (plain torch): the command line is tools/train_action_head.py.
"""
