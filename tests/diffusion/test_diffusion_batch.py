"""Batching in the diffusion pack: jobs that differ in prompt, seed and
guidance share one denoising loop (and one VAE decode), and each image is the
one the job gives alone (CPU fp32)."""

from __future__ import annotations

import logging

import pytest
from lcmgraph_nodes.diffusion.models import sampling

from lcmgraph import NodeFailed, RunRequest, RunResult

from .diffusion_helpers import Flow, link, max_diff, txt2img

#: Largest difference allowed between a job's image in a batch and alone
#: (pixels in 0..1). Measured on the CPU in fp32: see the tests' own asserts.
TOLERANCE = 1e-4


@pytest.fixture
def loops(monkeypatch):
    """Records the number of requests of every denoising loop."""
    seen: list[int] = []
    real = sampling._denoise

    def counting(ctx, reqs, report):
        seen.append(len(reqs))
        return real(ctx, reqs, report)

    monkeypatch.setattr(sampling, "_denoise", counting)
    return seen


def captured(flow: Flow, node: str = "decode") -> dict:
    flow.add("capture", "Capture", value=link(node, "image" if node == "decode" else "latent"))
    return flow.doc("capture")


def batch(engine, docs: list[dict]) -> tuple[list, list[list]]:
    sinks: list[list] = [[] for _ in docs]
    outcomes = engine.run_batch([RunRequest(d, sink=s.append, run_id=f"job{i}")
                                 for i, (d, s) in enumerate(zip(docs, sinks, strict=True))])
    return outcomes, sinks


def images(outcomes) -> list:
    assert all(isinstance(o, RunResult) for o in outcomes), outcomes
    return [o.values["decode"]["image"].numpy() for o in outcomes]


def alone(engine, doc: dict):
    return engine.run(doc).values["decode"]["image"].numpy()


def done(events, node: str) -> dict:
    (data,) = [e.data for e in events if e.kind == "node_done" and e.node == node]
    return data


CASES = {
    # LCM adds fresh noise between steps: per-job generators keep it the same.
    "lcm": [dict(prompt="a red circle", seed=1), dict(prompt="a blue square", seed=2),
            dict(prompt="a green house at night", seed=3)],
    # CFG with and without a negative prompt, and different guidance per job.
    "lcm_cfg": [dict(prompt="a red circle", negative="blurry", seed=4, guidance=1.5),
                dict(prompt="a blue square", negative="dark", seed=5, guidance=2.0),
                dict(prompt="a cat", negative="", seed=6, guidance=1.5)],
    "euler_ancestral_cfg": [dict(prompt="a tree", negative="ugly", seed=7, cfg=3.0),
                            dict(prompt="a lake", negative="noise", seed=8, cfg=5.5),
                            dict(prompt="a dog", negative="grey", seed=9, cfg=3.0)],
}


def flows(case: str, ckpt: str = "tiny", **common) -> list[Flow]:
    out = []
    for job in CASES[case]:
        job = dict(job, **common)
        if case == "euler_ancestral_cfg":
            out.append(txt2img(ckpt, sampler="Sampler", scheduler="euler_ancestral", steps=4, **job))
        else:
            out.append(txt2img(ckpt, steps=4, **job))
    return out


@pytest.mark.parametrize("ckpt,case", [("tiny", "lcm"), ("tiny", "lcm_cfg"), ("tiny", "euler_ancestral_cfg"),
                                       ("tiny-xl", "lcm_cfg"), ("tiny-lcm", "lcm_cfg")])
def test_each_image_of_a_batch_is_the_one_its_job_makes_alone(make_engine, loops, ckpt, case):
    docs = [captured(f) for f in flows(case, ckpt)]
    outcomes, sinks = batch(make_engine(), docs)
    assert loops == [3]  # one denoising loop for the three jobs
    for events in sinks:
        assert done(events, "sampler")["batch"] == 3
        assert done(events, "decode")["batch"] == 3
        steps = [e.data["step"] for e in events if e.kind == "node_progress" and e.node == "sampler"
                 and "stage" not in e.data]
        previews = [e.preview for e in events if e.kind == "node_progress" and e.node == "sampler"
                    and "stage" not in e.data]
        assert steps == [1, 2, 3, 4] and all(p is not None for p in previews)
    batched = images(outcomes)
    reference = make_engine()  # a second engine: nothing comes from the batch's cache
    diffs = [max_diff(image, alone(reference, d)) for image, d in zip(batched, docs, strict=True)]
    assert max(diffs) <= TOLERANCE, diffs
    # the three jobs are really different images
    assert min(max_diff(batched[0], batched[1]), max_diff(batched[1], batched[2])) > 1e-3


def test_the_latents_of_a_batch_equal_the_single_runs(make_engine, loops):
    """Before the VAE: the samplers' own results, compared exactly as measured."""
    docs = [captured(f, "sampler") for f in flows("lcm_cfg")]
    outcomes, _ = batch(make_engine(), docs)
    reference = make_engine()
    diffs = [max_diff(o.values["sampler"]["latent"].samples.numpy(),
                      reference.run(d).values["sampler"]["latent"].samples.numpy())
             for o, d in zip(outcomes, docs, strict=True)]
    assert max(diffs) <= TOLERANCE, diffs


def test_jobs_of_several_images_each(make_engine, loops):
    docs = [captured(txt2img(prompt=p, seed=s, batch=2, steps=3, guidance=1.5, negative="dull"))
            for p, s in (("a red circle", 11), ("a blue square", 12))]
    outcomes, _ = batch(make_engine(), docs)
    assert loops == [2]
    reference = make_engine()
    for image, d in zip(images(outcomes), docs, strict=True):
        assert image.shape[0] == 2
        assert max_diff(image, alone(reference, d)) <= TOLERANCE


@pytest.mark.parametrize("change", [dict(steps=2), dict(size=72)])
def test_different_steps_or_size_fall_back_to_one_loop_per_job(make_engine, loops, change, caplog):
    first = dict(prompt="a red circle", seed=1, steps=4)
    docs = [captured(txt2img(**first)), captured(txt2img(**dict(first, prompt="a cat", seed=2, **change)))]
    with caplog.at_level(logging.INFO, logger=sampling.__name__):
        outcomes, sinks = batch(make_engine(), docs)
    assert loops == [1, 1]
    reason = "different steps" if "steps" in change else "different latent sizes"
    assert f"sampler: sampling 2 inputs one by one: {reason}" in caplog.text
    assert all("batch" not in done(events, "sampler") for events in sinks)
    reference = make_engine()
    for outcome, d in zip(outcomes, docs, strict=True):
        single = reference.run(d)
        # each sampler ran alone after all: bitwise its single run (the decode may still be batched)
        assert max_diff(outcome.values["sampler"]["latent"].samples.numpy(),
                        single.values["sampler"]["latent"].samples.numpy()) == 0.0
        assert max_diff(outcome.values["decode"]["image"].numpy(),
                        single.values["decode"]["image"].numpy()) <= TOLERANCE


def test_a_job_whose_sampler_fails_fails_alone(make_engine, loops, caplog):
    """The batched loop raises for one job's input; the fallback runs each job
    alone, so the other two still finish."""
    def flow(clip_ckpt: str, prompt: str, seed: int) -> dict:
        f = txt2img(prompt=prompt, seed=seed, steps=2, clip=link("text_ckpt", "clip"))
        f.add("text_ckpt", "LoadCheckpoint", checkpoint=clip_ckpt)
        return captured(f)

    docs = [flow("tiny", "a red circle", 1), flow("tiny-xl", "a cat", 2), flow("tiny", "a dog", 3)]
    outcomes, sinks = batch(make_engine(), docs)
    assert loops == [3, 1, 1, 1]  # the batched loop, then each job alone
    failed = outcomes[1]
    assert isinstance(failed, NodeFailed)
    assert str(failed) == ("node 'sampler' (LCMSampler) failed: the positive conditioning was encoded by a "
                           "sdxl text encoder but the model is sd15")
    assert [e.kind for e in sinks[1]][-2:] == ["node_error", "run_error"]
    assert "node 'sampler' (LCMSampler): the batched call for 3 inputs failed (ValueError: " in caplog.text
    reference = make_engine()
    for index in (0, 2):
        assert max_diff(outcomes[index].values["sampler"]["latent"].samples.numpy(),
                        reference.run(docs[index]).values["sampler"]["latent"].samples.numpy()) == 0.0


def test_img2img_jobs_share_one_loop(make_engine, loops):
    def flow(prompt: str, seed: int, strength: float = 0.6) -> dict:
        f = Flow()
        f.add("ckpt", "LoadCheckpoint", checkpoint="tiny")
        f.add("img", "LoadImage", image="hint.png")
        f.add("pos", "TextEncode", clip=link("ckpt", "clip"), text=prompt)
        f.add("sampler", "Img2Img", model=link("ckpt", "model"), vae=link("ckpt", "vae"),
              positive=link("pos", "conditioning"), image=link("img", "image"), strength=strength, seed=seed,
              steps=3)
        f.add("decode", "VAEDecode", vae=link("ckpt", "vae"), latent=link("sampler", "latent"))
        return captured(f)

    docs = [flow("a red circle", 1), flow("a blue square", 2)]
    outcomes, _ = batch(make_engine(), docs)
    assert loops == [2]
    reference = make_engine()
    for image, d in zip(images(outcomes), docs, strict=True):
        assert max_diff(image, alone(reference, d)) <= TOLERANCE


def test_save_image_writes_one_file_per_job_with_its_own_workflow(make_engine, tmp_path):
    from lcmgraph.pngmeta import workflow_from_png

    docs = []
    for index, prompt in enumerate(("a red circle", "a blue square")):
        f = txt2img(prompt=prompt, seed=index, steps=2)
        f.add("save", "SaveImage", image=link("decode", "image"), filename_prefix=f"job{index}")
        docs.append(f.doc("save"))
    engine = make_engine()
    outcomes = engine.run_batch([RunRequest(d, output_dir=tmp_path / f"out{i}") for i, d in enumerate(docs)])
    for index, outcome in enumerate(outcomes):
        (saved,) = outcome.outputs["save"]["images"]
        assert saved["filename"] == f"job{index}_00001.png"
        assert saved["path"] == str(tmp_path / f"out{index}" / f"job{index}_00001.png")
        assert workflow_from_png(saved["path"]) == docs[index]


def test_controlnet_jobs_with_the_same_hint_share_one_loop(make_engine, loops):
    def flow(prompt: str, seed: int, strength: float = 0.9) -> dict:
        f = txt2img(prompt=prompt, seed=seed, steps=3, guidance=1.5, negative="dull")
        f.add("cn", "LoadControlNet", controlnet="cn")
        f.add("hint", "LoadImage", image="hint.png")
        f.add("apply", "ApplyControlNet", conditioning=link("pos", "conditioning"),
              control_net=link("cn", "control_net"), image=link("hint", "image"), strength=strength, end=0.7)
        f.nodes["sampler"]["inputs"]["positive"] = link("apply", "conditioning")
        return captured(f)

    docs = [flow("a city at night", 6), flow("a forest", 7)]
    outcomes, _ = batch(make_engine(), docs)
    assert loops == [2]
    reference = make_engine()
    for image, d in zip(images(outcomes), docs, strict=True):
        assert max_diff(image, alone(reference, d)) <= TOLERANCE
    # another hint strength: one loop per job
    loops.clear()
    outcomes, _ = batch(make_engine(), [flow("a city at night", 6), flow("a forest", 7, strength=0.5)])
    assert loops == [1, 1] and all(isinstance(o, RunResult) for o in outcomes)
