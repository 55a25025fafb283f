"""Training the action head on recorded motion: labels from odometry, loss goes down, the trained head
reproduces the recorded motion, and the command line works on a real rosbag."""
import numpy as np
import pytest
import torch

from sparsevideonav_ros.core import se2
from sparsevideonav_ros.policies.sparsevideonav.configuration_sparsevideonav import SparseVideoNavConfig
from sparsevideonav_ros.policies.sparsevideonav.models import load_models
from sparsevideonav_ros.policies.sparsevideonav.policy import SparseVideoNavPolicy
from sparsevideonav_ros.sources.synthetic import SyntheticSource
from sparsevideonav_ros.tools import train_action_head as tah

def steps(frames):
    """Per 0.25 s motions, a gait-like pattern repeating every 4 frames (~0.3 m/s, weaving).

    The period equals the planning period, so every sample has the same 8-step label sequence: a head
    that learned it must beat predicting the mean action.
    """
    pattern = np.array([[0.05, 0.0, 0.08], [0.08, 0.01, 0.0], [0.11, 0.0, -0.08], [0.08, -0.01, 0.0]])
    return pattern[np.arange(frames) % 4]


def episode(frames=28):
    source = SyntheticSource(width=96, height=72, fps=4.0)
    source.open()
    poses = np.vstack([np.zeros(3), se2.poses_from_deltas(steps(frames))[:-1]])
    return tah.Episode([source.render(i) for i in range(frames)], [i * 0.25 for i in range(frames)], poses,
                       "walk forward and stop by the wooden door")


def test_labels_are_the_relative_motions_between_the_next_frames():
    labels = tah.action_labels(episode().poses, 5)
    np.testing.assert_allclose(labels, steps(28)[5:13], atol=1e-9)


@pytest.fixture(scope="module")
def policy():
    config = SparseVideoNavConfig(sampler_steps=2)
    return SparseVideoNavPolicy(config, models=load_models(config))


def test_training_learns_the_recorded_motion(policy, tmp_path):
    samples = tah.build_samples(policy, [episode()])
    assert len(samples) == 3  # planning at 12, 16, 20 frames (28 frames leave 8 labels after each)
    assert samples[0].future_latents.shape[:2] == (16, 8) and samples[0].actions.shape == (8, 3)
    torch.manual_seed(0)
    head = tah.fresh_head_like(policy.models.action_head, samples)
    labels = torch.stack([s.actions for s in samples])
    np.testing.assert_allclose(head.head_config.action_mean, labels.reshape(-1, 3).mean(0).numpy(), atol=1e-6)
    untrained = head.sample(samples[0].future_latents[None], samples[0].text_embeds[None],
                            samples[0].text_mask[None], generator=torch.Generator().manual_seed(0))[0]
    losses = tah.train(head, samples, epochs=100, batch_size=3, lr=3e-3, log=lambda *_: None)
    assert losses[-1] < 0.5 * losses[0]
    head.save_pretrained(tmp_path / "head")
    from sparsevideonav_ros.policies.sparsevideonav.action_head import SparseVideoNavActionHead
    loaded = SparseVideoNavActionHead.from_pretrained(tmp_path / "head")
    actions = loaded.sample(samples[0].future_latents[None], samples[0].text_embeds[None], samples[0].text_mask[None],
                            generator=torch.Generator().manual_seed(0))
    # the trained head follows the recorded sequence better than the untrained one (which predicts the mean)
    error_trained = (actions[0] - labels[0]).abs().mean()
    error_untrained = (untrained - labels[0]).abs().mean()
    assert error_trained < 0.5 * error_untrained, (error_trained, error_untrained)


def test_no_samples_is_a_clear_error(policy):
    with pytest.raises(ValueError, match="no training samples"):
        tah.train(policy.models.action_head, [], epochs=1)


def test_command_line_trains_from_a_rosbag(tmp_path):
    from sparsevideonav_ros import bags
    from sparsevideonav_ros.core import images
    ep = episode(24)
    writer = bags.open_writer(tmp_path / "bag")
    jpeg = bags.add_connection(writer, "/camera/image_raw/compressed", "sensor_msgs/msg/CompressedImage")
    odom = bags.add_connection(writer, "/odom", "nav_msgs/msg/Odometry")
    text = bags.add_connection(writer, "/instruction", "std_msgs/msg/String")
    from nav_msgs.msg import Odometry
    from rclpy.serialization import serialize_message
    from sensor_msgs.msg import CompressedImage
    from std_msgs.msg import Header, String
    from sparsevideonav_ros.nodes.common import seconds_to_stamp

    writer.write(text, int(100e9), serialize_message(String(data=ep.instruction)))
    for stamp, rgb, pose in zip(ep.stamps, ep.frames, ep.poses):
        ns = int((100 + stamp) * 1e9) + 1
        header = Header(stamp=seconds_to_stamp(100 + stamp), frame_id="camera_link")
        writer.write(jpeg, ns, serialize_message(CompressedImage(header=header, format="jpeg",
                                                                 data=images.encode_jpeg(rgb))))
        odometry = Odometry(header=Header(stamp=header.stamp, frame_id="odom"))
        odometry.pose.pose.position.x, odometry.pose.pose.position.y = float(pose[0]), float(pose[1])
        _, _, odometry.pose.pose.orientation.z, odometry.pose.pose.orientation.w = se2.quaternion_from_yaw(float(pose[2]))
        writer.write(odom, ns, serialize_message(odometry))
    writer.close()
    read = tah.read_bag_episode(tmp_path / "bag")
    assert read.instruction == ep.instruction and len(read.frames) >= 20
    assert tah.main([str(tmp_path / "bag"), "--checkpoint", "tiny", "--out", str(tmp_path / "head"),
                     "--epochs", "2"]) == 0
    assert (tmp_path / "head" / "config.json").is_file() and (tmp_path / "head" / "training_report.json").is_file()
