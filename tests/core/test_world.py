import numpy as np
import pytest

from turbo_edge.core import world


def test_sample_is_pure_function_of_split_seed_index():
    a1, c1 = world.sample("train", 3, 17)
    a2, c2 = world.sample("train", 3, 17)
    assert a1 == a2 and np.array_equal(c1, c2)
    _, c3 = world.sample("val", 3, 17)
    assert not np.array_equal(c1, c3)


def test_clip_shape_dtype_and_attribute_counts():
    attrs, clip = world.sample("train", 0, 0)
    assert clip.shape == (8, 32, 32, 3) and clip.dtype == np.uint8
    assert len(world.COLOURS) >= 6 and len(world.SHAPES) >= 4 and len(world.MOTIONS) >= 5
    assert world.parse_prompt(attrs.prompt) == attrs


def test_heldout_split_is_disjoint_and_every_pair_still_trains():
    train = set(world.combinations("train"))
    held = set(world.combinations("heldout"))
    assert len(held) == 12 and not train & held and len(train) + len(held) == 120
    for h in held:
        assert any(t.colour == h.colour and t.shape == h.shape for t in train)
        assert any(t.colour == h.colour and t.motion == h.motion for t in train)
        assert any(t.shape == h.shape and t.motion == h.motion for t in train)
    drawn = {world.sample("train", 0, i)[0] for i in range(400)}
    assert not drawn & held


@pytest.mark.parametrize("motion,axis,sign", [("left", 1, -1), ("right", 1, 1), ("up", 0, -1), ("down", 0, 1)])
def test_object_moves_in_named_direction(motion, axis, sign):
    clip = world.render_clip(world.Attributes("red", "circle", motion), np.random.default_rng(0))

    def centroid(frame):
        mask = frame[..., 0].astype(int) - frame[..., 1].astype(int) > 100  # red pixels
        return np.argwhere(mask).mean(axis=0)

    shift = centroid(clip[-1])[axis] - centroid(clip[0])[axis]
    assert sign * shift >= 10  # the travel range is 12..16 px
    other = 1 - axis
    assert abs(centroid(clip[-1])[other] - centroid(clip[0])[other]) < 0.5


def test_still_clips_do_not_move():
    clip = world.render_clip(world.Attributes("blue", "square", "still"), np.random.default_rng(1))
    assert all(np.array_equal(clip[0], f) for f in clip[1:])


def test_parse_prompt_names_the_bad_part():
    with pytest.raises(ValueError, match="unknown colour 'pink'"):
        world.parse_prompt("a pink circle moving left")
    with pytest.raises(ValueError, match="unknown motion"):
        world.parse_prompt("a red circle spinning")


def test_prompt_set_is_balanced():
    prompts = world.prompt_set("val", 216)
    counts = {a: prompts.count(a) for a in set(prompts)}
    assert len(counts) == 108 and set(counts.values()) == {2}
