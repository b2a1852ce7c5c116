"""The Open Bandit Dataset loader: the shipped files, the published facts, the
meaning of a propensity, the BTS policy's Monte Carlo distribution, bad files."""

from __future__ import annotations

import gzip
import shutil

import numpy as np
import pytest

from bandits.validation import BanditConfigError
from envs import logged, obd


@pytest.fixture(scope="module")
def random_all():
    return obd.load("random", "all")


@pytest.fixture(scope="module")
def bts_all():
    return obd.load("bts", "all")


def test_shipped_files_match_their_checksums_and_keep_the_attribution():
    checked = obd.verify()
    expected = {
        f"{p}/{c}/{name}"
        for p in obd.POLICIES
        for c in obd.CAMPAIGNS
        for name in (f"{c}.csv.gz", "item_context.csv.gz")
    }
    assert set(checked) == expected | {"prior_bts.yaml"}
    folder = obd.data_dir()
    assert "Apache License" in (folder / "LICENSE-Apache-2.0.txt").read_text()
    readme = " ".join((folder / "README.md").read_text().split())
    assert "arXiv:2008.07146" in readme and "Apache License 2.0" in readme


def test_a_damaged_file_fails_the_checksum_naming_it(tmp_path):
    root = tmp_path / "obd"
    shutil.copytree(obd.data_dir(), root)
    (root / "prior_bts.yaml").write_text("all: {}\n")
    with pytest.raises(BanditConfigError, match=r"prior_bts.yaml' has SHA-256"):
        obd.verify(root)


def test_random_all_facts(random_all):
    data = random_all
    assert len(data) == 10_000 and data.mask.shape == (10_000, 80)
    assert set(np.unique(data.action)) == set(range(80))
    np.testing.assert_array_equal(data.propensity, np.float32(0.0125))
    # The file codes the slots 1, 2, 3; the loader keeps them 0-based.
    assert set(np.unique(data.position)) == {0, 1, 2}
    assert data.position.dtype == np.int32
    assert round(100 * float(data.reward.mean()), 2) == 0.38
    assert int(data.reward.sum()) == 38
    assert data.action_probs is None and data.expected_rewards is None
    assert np.all(np.diff(data.step) == 1) and np.all(data.stream == 0)


def test_bts_all_click_rate_and_campaign_sizes(bts_all):
    assert len(bts_all) == 10_000
    assert round(100 * float(bts_all.reward.mean()), 2) == 0.42
    for campaign, items in (("men", 34), ("women", 46)):
        data = obd.load("random", campaign)
        assert data.mask.shape[1] == items == obd.NUM_ITEMS[campaign]
        np.testing.assert_allclose(data.propensity, 1.0 / items, rtol=1e-6)


def test_features_layout_and_shared_encoding(random_all, bts_all):
    """Context = one-hot user categories (one 1 per field) + K affinities; the
    item features of both policies' (differently hashed) files agree."""
    fields = random_all.metadata["context_fields"]
    widths = [w for _, w in fields]
    assert fields[-1] == ["user-item_affinity", 80]
    assert random_all.context.shape[1] == sum(widths)
    users = obd.user_features(random_all)
    start = 0
    for width in widths[:-1]:
        np.testing.assert_array_equal(users[:, start : start + width].sum(axis=1), 1)
        start += width
    assert random_all.metadata["user_categories"] == bts_all.metadata["user_categories"]
    np.testing.assert_array_equal(random_all.arms[0], bts_all.arms[0])
    items, names = obd.item_features("all", "bts")
    assert items.shape == (80, len(names)) and names[0] == "item_feature_0"
    pair = obd.pair_features(random_all.take(np.arange(5)))
    assert pair.shape == (5, 80, users.shape[1] + 1 + items.shape[1] + 3)
    np.testing.assert_array_equal(
        pair[:, :, -3:].argmax(axis=2), np.repeat(random_all.position[:5, None], 80, 1)
    )
    np.testing.assert_array_equal(
        pair[2, 7, users.shape[1]], obd.affinities(random_all)[2, 7]
    )


def test_loaded_logs_round_trip_through_the_logged_data_file(random_all, tmp_path):
    small = random_all.take(np.arange(200))
    back = logged.load(logged.save(small, tmp_path / "obd.parquet"))
    np.testing.assert_array_equal(back.position, small.position)
    np.testing.assert_array_equal(back.arms, small.arms)
    assert back.action_probs is None and back.metadata["campaign"] == "all"


def test_bts_propensity_is_per_position_not_per_slate(random_all, bts_all):
    """With pi_0(a | k) per position, E[1 / pi_0] over logged rows is the number
    of items K (sum over a of pi_0 / pi_0); with slate-level propensities (the
    item anywhere in the 3 slots) it would be K / 3. 99% bootstrap interval over
    2,000 resamples (seed 0) of the mean of 1 / propensity on bts/all (observed
    80.9): it must hold K = 80 and lie far above K / 3 = 26.7."""
    uniform = np.mean(1.0 / random_all.propensity.astype(np.float64))
    assert uniform == pytest.approx(80.0, rel=1e-6)  # 1 / float32(0.0125)
    inverse = 1.0 / bts_all.propensity.astype(np.float64)
    rng = np.random.default_rng(0)
    means = inverse[rng.integers(0, inverse.size, (2000, inverse.size))].mean(axis=1)
    low, high = np.quantile(means, [0.005, 0.995])
    assert low <= 80.0 <= high
    assert low > 2 * 80 / 3


def test_bts_position_probs_from_the_priors():
    alpha, beta = obd.bts_prior("men")
    assert alpha.shape == beta.shape == (34,)
    probs = obd.bts_position_probs(alpha, beta, draws=20_000, seed=3)
    assert probs.shape == (34, 3)
    np.testing.assert_allclose(probs.sum(axis=0), 1.0)  # one item per slot
    assert np.all(probs.sum(axis=1) <= 1.0)  # an item fills at most one slot
    again = obd.bts_position_probs(alpha, beta, draws=20_000, seed=3, batch=7_000)
    np.testing.assert_array_equal(probs, again)  # batching changes nothing
    # Against an independent estimate (another seed): Monte Carlo error at most
    # 1 / (2 sqrt(20,000)) = 0.0035 per probability; allow 4.5 of that.
    other = obd.bts_position_probs(alpha, beta, draws=20_000, seed=4)
    assert np.max(np.abs(probs - other)) < 4.5 * 0.0035
    # The item with the largest prior mean leads the first slot.
    assert probs[:, 0].argmax() == np.argmax(alpha / (alpha + beta))


def _copy(tmp_path):
    root = tmp_path / "obd"
    shutil.copytree(obd.data_dir(), root)
    return root


def _rewrite(path, edit):
    with gzip.open(path, "rt") as f:
        lines = f.read().splitlines()
    with gzip.open(path, "wt") as f:
        f.write("\n".join(edit(lines)) + "\n")


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (
            lambda lines: [lines[0], lines[1].replace(",14,3,", ",14,7,", 1)],
            r"column 'position' row 0 is 7, not a position in 1..3",
        ),
        (
            lambda lines: [lines[0], lines[1].replace(",0.0125,", ",nan,", 1)],
            r"column 'propensity_score' row 0 is 'nan', not a finite number",
        ),
        (
            lambda lines: [lines[0].replace("click", "clicked"), lines[1]],
            r"has no column 'click'",
        ),
        (
            lambda lines: [lines[0], lines[1].replace(",14,3,", ",99,3,", 1)],
            r"column 'item_id' row 0 is 99, not an item in \[0, 80\)",
        ),
    ],
)
def test_bad_files_are_named_errors(tmp_path, edit, message):
    root = _copy(tmp_path)
    path = root / "random" / "all" / "all.csv.gz"
    path.chmod(0o644)
    _rewrite(path, edit)
    with pytest.raises(BanditConfigError, match=r"random/all/all.csv.gz'.*" + message):
        obd.load("random", "all", root=root)


def test_unreadable_or_missing_files_and_bad_priors(tmp_path):
    root = _copy(tmp_path)
    path = root / "bts" / "men" / "men.csv.gz"
    path.chmod(0o644)
    path.write_bytes(b"not gzip")
    with pytest.raises(BanditConfigError, match=r"men.csv.gz' is not a readable gzip"):
        obd.load("bts", "men", root=root)
    with pytest.raises(BanditConfigError, match="does not exist"):
        obd.load("random", "all", root=tmp_path / "nowhere")
    with pytest.raises(BanditConfigError, match="campaign must be one of"):
        obd.load("random", "kids")
    prior = root / "prior_bts.yaml"
    prior.chmod(0o644)
    prior.write_text("all:\n  alpha: [1, 2]\n  beta: [1, 2]\n")
    with pytest.raises(BanditConfigError, match=r"all.alpha must hold 80 positive"):
        obd.bts_prior("all", root=root)
    prior.write_text("!!python/object/apply:os.system ['echo unsafe']\n")
    with pytest.raises(BanditConfigError, match=r"prior_bts.yaml' is not a readable"):
        obd.bts_prior("all", root=root)
