"""Field trials as the SparseVideoNav paper runs them: a trial definition stored beside its bag
(trial.py), per-episode navigation metrics (metrics.py, pure numpy) and what a bag holds for them
(recorded.py, read with the rosbags library). No rclpy here: the command-line edges are
tools/trial.py and tools/compare.py.
"""
