"""ComfyUI's custom sampling nodes, ModelSamplingDiscrete's prediction types and
the ComfyUI-TCD node import as Sampler with the same timesteps; schedules,
predictions and tcd export back to what ComfyUI loads."""

from __future__ import annotations

import copy

import numpy as np
import pytest

from lcmgraph.comfy import ComfyImportError, load_any, to_api

from .helpers import image, load, native, node, normalized, txt2img

MODEL, POS, NEG, LATENT = ["4", 0], ["6", 0], ["7", 0], ["5", 0]


def _base() -> dict:
    api = load("api_txt2img.json")
    del api["10"], api["3"]
    api["8"]["inputs"]["samples"] = ["3", 0]
    return api


def _custom(sigmas: dict, sampler: dict | None = None, add_noise=True, model=None) -> dict:
    api = _base()
    api["20"] = sampler or {"class_type": "KSamplerSelect", "inputs": {"sampler_name": "euler"}}
    api["21"] = sigmas
    api["3"] = {"class_type": "SamplerCustom", "inputs": {
        "model": model or MODEL, "add_noise": add_noise, "noise_seed": 9, "cfg": 1.0, "positive": POS,
        "negative": NEG, "sampler": ["20", 1 if "TCD" in api["20"]["class_type"] else 0],
        "sigmas": ["21", 2 if "TCD" in sigmas["class_type"] else 0], "latent_image": LATENT}}
    return api


def _sampler(registry, api) -> dict:
    return load_any(api, registry)["nodes"]["3"]["inputs"]


def _pick(inputs: dict, *names) -> dict:
    return {n: inputs.get(n) for n in names}


BASIC = lambda scheduler, steps=4, denoise=1.0: {"class_type": "BasicScheduler", "inputs": {  # noqa: E731
    "model": MODEL, "scheduler": scheduler, "steps": steps, "denoise": denoise}}


@pytest.mark.parametrize("sigmas, expected", [
    (BASIC("sgm_uniform"), {"schedule": "sgm_uniform", "steps": 4, "denoise": 1.0}),
    (BASIC("karras", 10, 0.5), {"schedule": "karras", "steps": 20, "denoise": 0.5}),
    ({"class_type": "KarrasScheduler", "inputs": {"steps": 6, "sigma_max": 14.614642, "sigma_min": 0.0291675,
                                                  "rho": 7.0}}, {"schedule": "karras", "steps": 6}),
    ({"class_type": "KarrasScheduler", "inputs": {"steps": 2, "sigma_max": 10.0, "sigma_min": 0.1, "rho": 7.0}},
     {"schedule": "auto", "steps": 2, "sigmas": "10,0.1,0"}),
    ({"class_type": "SDTurboScheduler", "inputs": {"model": MODEL, "steps": 1, "denoise": 1.0}},
     {"schedule": "simple", "steps": 1}),
    ({"class_type": "SDTurboScheduler", "inputs": {"model": MODEL, "steps": 2, "denoise": 1.0}},
     {"schedule": "auto", "steps": 2, "timesteps": "999,899"}),
    ({"class_type": "HyperSDXL1StepUnetScheduler", "inputs": {"model": MODEL, "steps": 1}},
     {"schedule": "auto", "steps": 1, "timesteps": "800"}),
])
def test_sampler_custom_takes_the_timesteps_of_its_sigmas(registry, sigmas, expected):
    inputs = _sampler(registry, _custom(sigmas))
    assert _pick(inputs, *expected) == expected
    assert _pick(inputs, "scheduler", "seed", "cfg") == {"scheduler": "euler", "seed": 9, "cfg": 1.0}


def test_split_sigmas_become_start_and_end_steps(registry):
    api = _custom(BASIC("simple", 8))
    api["22"] = {"class_type": "SplitSigmas", "inputs": {"sigmas": ["21", 0], "step": 3}}
    api["3"]["inputs"]["sigmas"] = ["22", 0]
    api["30"] = copy.deepcopy(api["3"])
    api["30"]["inputs"].update(sigmas=["22", 1], add_noise=False, latent_image=["3", 0])
    api["8"]["inputs"]["samples"] = ["30", 0]
    nodes = load_any(api, registry)["nodes"]
    assert _pick(nodes["3"]["inputs"], "steps", "end_step") == {"steps": 8, "end_step": 3}
    assert _pick(nodes["30"]["inputs"], "steps", "start_step") == {"steps": 8, "start_step": 3}


def test_sampler_custom_advanced_reads_noise_and_guider(registry):
    api = _custom(BASIC("normal", 5))
    inputs = api.pop("3")["inputs"]
    api["23"] = {"class_type": "RandomNoise", "inputs": {"noise_seed": 11}}
    api["24"] = {"class_type": "CFGGuider", "inputs": {"model": MODEL, "positive": POS, "negative": NEG, "cfg": 2.5}}
    api["3"] = {"class_type": "SamplerCustomAdvanced", "inputs": {
        "noise": ["23", 0], "guider": ["24", 0], "sampler": inputs["sampler"], "sigmas": inputs["sigmas"],
        "latent_image": LATENT}}
    doc = load_any(api, registry)
    assert _pick(doc["nodes"]["3"]["inputs"], "scheduler", "schedule", "steps", "seed", "cfg") == {
        "scheduler": "euler", "schedule": "normal", "steps": 5, "seed": 11, "cfg": 2.5}
    assert set(doc["nodes"]) == {"3", "4", "5", "6", "7", "8", "9"}  # the read nodes make no node


def test_comfyui_tcd_node_becomes_sampler_tcd(registry):
    tcd = {"class_type": "TCDModelSamplingDiscrete", "inputs": {"model": MODEL, "steps": 6, "scheduler": "simple",
                                                                "denoise": 1.0, "eta": 0.4}}
    api = _custom(tcd, sampler=tcd, model=["21", 0])
    api["20"] = tcd
    api["3"]["inputs"]["sampler"] = ["20", 1]
    inputs = _sampler(registry, api)
    assert _pick(inputs, "scheduler", "steps", "eta", "schedule") == {
        "scheduler": "tcd", "steps": 6, "eta": 0.4, "schedule": "auto"}
    assert inputs["model"] == {"link": ["4", "model"]}


@pytest.mark.parametrize("sigmas, sampler, message", [
    ({"class_type": "SDTurboScheduler", "inputs": {"model": MODEL, "steps": 2, "denoise": 1.0}}, "euler_ancestral",
     "SDTurboScheduler's timesteps [999, 899] with sampler euler_ancestral: diffusers' "
     "EulerAncestralDiscreteScheduler takes no custom timesteps"),
    (BASIC("karras"), "ddim", "schedule karras with sampler ddim has no diffusers equivalent"),
    ({"class_type": "AlignYourStepsScheduler", "inputs": {"steps": 10}}, "euler",
     "input 'sigmas' comes from AlignYourStepsScheduler (node 21), which lcmgraph cannot read"),
])
def test_what_has_no_equivalent_is_refused_naming_it(registry, sigmas, sampler, message):
    api = _custom(sigmas, {"class_type": "KSamplerSelect", "inputs": {"sampler_name": sampler}})
    with pytest.raises(ComfyImportError) as err:
        load_any(api, registry)
    assert any(message in p for p in err.value.problems), err.value.problems


@pytest.mark.parametrize("sampling, prediction", [("eps", "epsilon"), ("v_prediction", "v_prediction"),
                                                  ("x0", "sample")])
def test_model_sampling_discrete_becomes_the_prediction_type(registry, sampling, prediction):
    api = load("api_txt2img.json")
    api["10"]["inputs"]["sampling"] = sampling
    api["3"]["inputs"].update(sampler_name="euler", scheduler="sgm_uniform")
    inputs = load_any(api, registry)["nodes"]["3"]["inputs"]
    assert _pick(inputs, "scheduler", "schedule", "prediction") == {
        "scheduler": "euler", "schedule": "sgm_uniform", "prediction": prediction}
    back = load_any(to_api(load_any(api, registry), registry), registry)
    assert back["nodes"]["3"]["inputs"]["prediction"] == prediction


@pytest.mark.parametrize("inputs", [
    {"scheduler": "euler", "schedule": "sgm_uniform"}, {"scheduler": "dpmpp_sde", "schedule": "karras"},
    {"scheduler": "uni_pc", "schedule": "normal"}, {"scheduler": "heun", "schedule": "auto"},
    {"scheduler": "euler", "schedule": "simple", "prediction": "sample", "steps": 1},
    {"scheduler": "tcd", "steps": 4, "eta": 0.3}, {"scheduler": "tcd", "steps": 4},
    {"scheduler": "lcm", "steps": 4},
])
def test_sampler_settings_export_to_comfyui_and_come_back(registry, inputs):
    doc = txt2img(node("Sampler", **{"seed": 1, "steps": 20, "cfg": 2.0, **inputs}))
    prompt = to_api(doc, registry)
    sampler = prompt["sampler"]
    if inputs["scheduler"] == "tcd":
        assert sampler["class_type"] == "SamplerCustom"
        tcd = prompt[sampler["inputs"]["sampler"][0]]
        assert tcd["class_type"] == "TCDModelSamplingDiscrete" and tcd["inputs"]["eta"] == 0.3
    elif inputs.get("schedule", "auto") != "auto":
        assert sampler["inputs"]["scheduler"] == inputs["schedule"]
    back = normalized(load_any(prompt, registry), registry)
    expected = normalized(doc, registry)
    if inputs["scheduler"] == "tcd":  # eta -1 means TCD's 0.3, written out
        expected["sampler"]["inputs"]["eta"] = 0.3
    assert back == expected


def test_imported_lightning_workflow_runs_trailing(engine):
    """euler + sgm_uniform from ComfyUI: the trailing timesteps SDXL-Lightning needs, not the checkpoint's."""
    api = load("api_txt2img.json")
    del api["10"]
    api["3"]["inputs"].update(model=["4", 0], sampler_name="euler", scheduler="sgm_uniform", seed=3)
    doc = load_any(api, engine.registry)
    ours = native({**doc["nodes"]})
    got = image(engine, doc, "8")
    ours["nodes"]["3"]["inputs"]["schedule"] = "auto"
    leading = image(engine, ours, "8")
    assert np.abs(got - leading).max() > 1e-3


@pytest.mark.parametrize("preset, steps, expected", [
    ("lightning", 4, {"sampler_name": "euler", "scheduler": "sgm_uniform", "steps": 4, "cfg": 1.0}),
    ("hyper-sd", 0, {"sampler_name": "ddim", "scheduler": "sgm_uniform", "steps": 4, "cfg": 1.0}),
])
def test_fewstep_sampler_exports_as_its_settings(registry, preset, steps, expected):
    doc = txt2img(node("FewStepSampler", seed=1, preset=preset, steps=steps))
    prompt = to_api(doc, registry)
    assert {k: prompt["sampler"]["inputs"][k] for k in expected} == expected
    back = load_any(prompt, registry)["nodes"]["sampler"]
    assert back["type"] == "Sampler" and back["inputs"]["schedule"] == "sgm_uniform"


def test_fewstep_tcd_exports_to_comfyui_tcd(registry):
    prompt = to_api(txt2img(node("FewStepSampler", seed=1, preset="tcd")), registry)
    assert prompt["sampler"]["class_type"] == "SamplerCustom"
    assert prompt["sampler.tcd"]["inputs"]["eta"] == 0.3
