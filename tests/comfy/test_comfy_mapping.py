"""The diffusion pack's ComfyUI mapping: samplers and schedulers, denoise
arithmetic, KSamplerAdvanced's noise flags, model sampling, SDXL prompts,
tiled VAE, and the messages for what has no lcmgraph equivalent."""

from __future__ import annotations

import pytest
from lcmgraph_nodes.diffusion.comfy_map.samplers import comfy_denoise, keep_fraction, truncation

from lcmgraph.comfy import ComfyImportError, load_any

from .helpers import load


def _with(sampler_inputs=None, class_type=None, drop_patch=False, **extra_nodes):
    api = load("api_txt2img.json")
    if class_type:
        api["3"]["class_type"] = class_type
    api["3"]["inputs"].update(sampler_inputs or {})
    if drop_patch:
        del api["10"]
        api["3"]["inputs"]["model"] = ["4", 0]
    api.update(extra_nodes)
    return api


def _error(registry, api) -> list[str]:
    with pytest.raises(ComfyImportError) as err:
        load_any(api, registry)
    return err.value.problems


def _sampler(registry, api) -> dict:
    return load_any(api, registry)["nodes"]["3"]


# -- denoise arithmetic ------------------------------------------------------------
def test_truncation_runs_the_steps_comfyui_runs():
    for steps in range(1, 41):
        for hundredths in range(1, 100):
            denoise = hundredths / 100
            total, ours = truncation(steps, denoise)
            assert total == max(int(steps / denoise), steps)  # ComfyUI's schedule length
            assert min(int(total * ours), total) == steps  # Sampler keeps exactly `steps` of them
            assert 0 < ours <= 1


def test_comfy_denoise_inverts_truncation():
    for total in range(1, 120):
        for keep in range(1, total + 1):
            d = comfy_denoise(keep, total)
            assert int(keep / d) == total
            assert truncation(keep, d) == (total, keep_fraction(keep, total))


def test_keep_fraction_prefers_short_numbers():
    assert keep_fraction(12, 20) == 0.6
    assert keep_fraction(7, 20) == 0.35
    assert keep_fraction(1, 3) == 0.34
    assert keep_fraction(29, 100) == 0.291  # 0.29 itself: int(100 * 0.29) == 28
    assert keep_fraction(4, 4) == 1.0


# -- samplers ----------------------------------------------------------------------
@pytest.mark.parametrize("sampler, scheduler, ours, schedule", [
    ("euler", "normal", "euler", "normal"), ("euler", "simple", "euler", "simple"),
    ("euler_ancestral", "sgm_uniform", "euler_ancestral", "sgm_uniform"), ("euler", "karras", "euler", "karras"),
    ("dpmpp_2m", "normal", "dpmpp_2m", "normal"), ("dpmpp_2m", "karras", "dpmpp_2m", "karras"),
    ("ddim", "ddim_uniform", "ddim", "ddim_uniform"), ("heun", "beta", "heun", "beta"),
    ("dpmpp_sde", "karras", "dpmpp_sde", "karras"), ("dpmpp_sde_gpu", "karras", "dpmpp_sde", "karras"),
    ("uni_pc", "simple", "uni_pc", "simple"), ("uni_pc_bh2", "exponential", "uni_pc_bh2", "exponential"),
    ("dpmpp_2m_sde", "karras", "dpmpp_2m_sde", "karras"), ("dpmpp_3m_sde", "exponential", "dpmpp_3m_sde", "exponential"),
    ("lms", "karras", "lms", "karras"), ("dpm_2_ancestral", "normal", "dpm_2_ancestral", "normal"),
    ("dpmpp_2s_ancestral", "karras", "dpmpp_2s_ancestral", "karras"), ("ddpm", "simple", "ddpm", "simple"),
    ("deis", "sgm_uniform", "deis", "sgm_uniform"), ("dpm_2", "ddim_uniform", "dpm_2", "ddim_uniform"),
])
def test_ksampler_maps_to_the_sampler_with_that_scheduler(registry, sampler, scheduler, ours, schedule):
    node = _sampler(registry, _with({"sampler_name": sampler, "scheduler": scheduler, "cfg": 7.5, "steps": 20},
                                    drop_patch=True))
    assert node["type"] == "Sampler"
    assert {k: node["inputs"][k] for k in ("scheduler", "schedule", "steps", "cfg", "denoise", "seed")} == {
        "scheduler": ours, "schedule": schedule, "steps": 20, "cfg": 7.5, "denoise": 1.0, "seed": 42}


def test_ksampler_denoise_becomes_the_truncation_that_runs_the_same_steps(registry):
    node = _sampler(registry, _with({"sampler_name": "euler", "scheduler": "normal", "steps": 12, "denoise": 0.6},
                                    drop_patch=True))
    assert (node["inputs"]["steps"], node["inputs"]["denoise"]) == (20, 0.6)


def test_ksampler_lcm_keeps_its_denoise(registry):
    node = _sampler(registry, _with({"denoise": 0.6, "cfg": 1.5}))
    assert node["type"] == "LCMSampler"
    assert {k: node["inputs"][k] for k in ("denoise", "guidance", "steps")} == {"denoise": 0.6, "guidance": 1.5, "steps": 4}


@pytest.mark.parametrize("sampler, scheduler, message", [
    ("heunpp2", "normal", "sampler 'heunpp2' has no diffusers equivalent in lcmgraph; the closest is 'heun'"),
    ("res_multistep", "normal", "sampler 'res_multistep' has no diffusers equivalent in lcmgraph; the closest is "
                                "'dpmpp_2m'"),
    ("euler_ancestral", "karras", "schedule karras with sampler euler_ancestral has no diffusers equivalent: "
                                  "diffusers' EulerAncestralDiscreteScheduler has no use_karras_sigmas"),
    ("dpmpp_2s_ancestral", "normal", "schedule normal with sampler dpmpp_2s_ancestral has no diffusers "
                                     "equivalent: diffusers' DPMSolverSinglestepScheduler has no timestep_spacing"),
    ("euler", "kl_optimal", "scheduler 'kl_optimal' has no diffusers equivalent in lcmgraph; the closest is 'karras'"),
    ("lcm", "beta", "scheduler 'beta' with sampler 'lcm' has no lcmgraph equivalent (lcm works with normal, "
                    "simple, sgm_uniform, ddim_uniform: LCM's own schedule)"),
])
def test_samplers_without_equivalent_are_named(registry, sampler, scheduler, message):
    problems = _error(registry, _with({"sampler_name": sampler, "scheduler": scheduler}, drop_patch=True))
    assert len(problems) == 1 and problems[0].startswith(f"node 3 (KSampler): {message}"), problems


def test_every_problem_is_reported_at_once(registry):
    api = _with({"sampler_name": "heunpp2"}, drop_patch=True)
    api["11"] = {"class_type": "KSampler", "inputs": {**api["3"]["inputs"], "sampler_name": "ipndm"}}
    api["5"]["inputs"]["color"] = "red"
    assert _error(registry, api) == [
        "node 3 (KSampler): sampler 'heunpp2' has no diffusers equivalent in lcmgraph; the closest is 'heun'",
        "node 5 (EmptyLatentImage): input 'color' has no lcmgraph equivalent",
        "node 11 (KSampler): sampler 'ipndm' has no diffusers equivalent in lcmgraph; the closest is 'deis'",
    ]


def test_other_samplers_on_an_lcm_patched_model_are_refused(registry):
    assert _error(registry, _with({"sampler_name": "euler", "scheduler": "normal"})) == [
        "node 3 (KSampler): sampler 'euler' on a model patched by ModelSamplingDiscrete 'lcm' (node 10) has no "
        "lcmgraph equivalent; use sampler 'lcm'"]


def test_lcm_without_model_sampling_converts_with_a_note(registry):
    doc = load_any(_with(drop_patch=True), registry)
    assert doc["nodes"]["3"]["type"] == "LCMSampler"
    assert doc["meta"]["comfy_import"]["notes"] == [
        "node 3 (KSampler): sampler 'lcm' on a model without ModelSamplingDiscrete 'lcm': ComfyUI then uses the "
        "model's plain noise schedule, lcmgraph always LCM's own (as ModelSamplingDiscrete 'lcm' does)"]


def test_links_where_a_value_is_needed_are_refused(registry):
    api = _with({"sampler_name": "euler", "scheduler": "normal", "denoise": 0.5, "steps": ["20", 0]}, drop_patch=True,
                **{"20": {"class_type": "PrimitiveInt", "inputs": {"value": 4}}})
    assert _error(registry, api) == [
        "node 3 (KSampler): input 'steps' must be a value, not a link from node 20, for lcmgraph to convert it"]


def test_primitive_nodes_become_value_nodes(registry):
    api = _with({"seed": ["20", 0]}, **{"20": {"class_type": "PrimitiveInt", "inputs": {"value": 9}}})
    doc = load_any(api, registry)
    assert doc["nodes"]["20"] == {"type": "Int", "inputs": {"value": 9}}
    assert doc["nodes"]["3"]["inputs"]["seed"] == {"link": ["20", "value"]}


# -- KSamplerAdvanced ----------------------------------------------------------------
def _advanced(**inputs):
    base = {"add_noise": "enable", "noise_seed": 5, "steps": 10, "cfg": 2.0, "sampler_name": "euler",
            "scheduler": "normal", "start_at_step": 0, "end_at_step": 10000, "return_with_leftover_noise": "disable"}
    base.update(inputs)
    api = _with(class_type="KSamplerAdvanced", drop_patch=True)
    for key in ("seed", "denoise"):
        del api["3"]["inputs"][key]
    api["3"]["inputs"].update(base)
    return api


@pytest.mark.parametrize("inputs, expected", [
    ({}, {"steps": 10, "denoise": 1.0, "start_step": 0, "end_step": 10000}),
    ({"end_at_step": 6, "return_with_leftover_noise": "enable"}, {"steps": 10, "denoise": 1.0, "start_step": 0, "end_step": 6}),
    ({"add_noise": "disable", "start_at_step": 6}, {"steps": 10, "denoise": 1.0, "start_step": 6, "end_step": 10000}),
    # No noise from step 0: ComfyUI's zero noise, Sampler's add_noise off.
    ({"add_noise": "disable"}, {"steps": 10, "denoise": 1.0, "start_step": 0, "add_noise": False}),
    # Noise added at step 3: Sampler's truncated schedule, which starts there.
    ({"start_at_step": 3}, {"steps": 10, "denoise": 0.7, "start_step": 0, "end_step": 10000}),
    ({"start_at_step": 3, "end_at_step": 8, "return_with_leftover_noise": "enable"},
     {"steps": 10, "denoise": 0.7, "start_step": 0, "end_step": 5}),
])
def test_ksampler_advanced_start_end_and_noise(registry, inputs, expected):
    node = _sampler(registry, _advanced(**inputs))
    assert node["type"] == "Sampler"
    assert {k: node["inputs"][k] for k in expected} == expected
    assert (node["inputs"]["seed"], node["inputs"]["cfg"], node["inputs"]["scheduler"]) == (5, 2.0, "euler")


def test_ksampler_advanced_lcm_is_the_general_sampler_with_lcm(registry):
    api = _advanced(sampler_name="lcm", scheduler="sgm_uniform", end_at_step=2, return_with_leftover_noise="enable")
    api["10"] = {"class_type": "ModelSamplingDiscrete", "inputs": {"sampling": "lcm", "zsnr": False, "model": ["4", 0]}}
    api["3"]["inputs"]["model"] = ["10", 0]
    node = _sampler(registry, api)
    assert (node["type"], node["inputs"]["scheduler"], node["inputs"]["end_step"]) == ("Sampler", "lcm", 2)


@pytest.mark.parametrize("inputs, message", [
    ({"end_at_step": 6}, "return_with_leftover_noise 'disable' with end_at_step 6 below steps 10: ComfyUI then "
                         "denoises fully in its last step, lcmgraph's Sampler returns the leftover noise; set "
                         "return_with_leftover_noise to 'enable'"),
    ({"add_noise": "maybe"}, "add_noise 'maybe' is neither 'enable' nor 'disable'"),
    ({"start_at_step": 10}, "start_at_step 10 leaves none of the 10 steps"),
])
def test_ksampler_advanced_without_equivalent(registry, inputs, message):
    assert _error(registry, _advanced(**inputs)) == [f"node 3 (KSamplerAdvanced): {message}"]


def test_ksampler_advanced_steps_from_value_nodes_stay_links(registry):
    """The split step of a base -> refiner pair is often one PrimitiveInt feeding both samplers."""
    api = _advanced(start_at_step=["20", 0], add_noise="disable")
    api["20"] = {"class_type": "PrimitiveInt", "inputs": {"value": 6}}
    node = _sampler(registry, api)
    assert node["inputs"]["start_step"] == {"link": ["20", "value"]}
    assert "add_noise" not in node["inputs"]  # disable after step 0: Sampler adds none anyway
    api = _advanced(end_at_step=["20", 0], return_with_leftover_noise="enable", steps=["21", 0])
    api.update({"20": {"class_type": "PrimitiveInt", "inputs": {"value": 6}},
                "21": {"class_type": "PrimitiveInt", "inputs": {"value": 10}}})
    node = _sampler(registry, api)
    assert (node["inputs"]["end_step"], node["inputs"]["steps"]) == ({"link": ["20", "value"]}, {"link": ["21", "value"]})


def test_ksampler_advanced_refuses_to_change_a_linked_step(registry):
    api = _advanced(start_at_step=["20", 0])  # noise added at step 3: the start becomes Sampler's denoise
    api["20"] = {"class_type": "PrimitiveInt", "inputs": {"value": 3}}
    assert _error(registry, api) == [
        "node 3 (KSamplerAdvanced): input 'start_at_step' comes from node 20 and lcmgraph's conversion changes it "
        "(3 -> 0); give it as a value"]
    api["20"] = {"class_type": "VAEDecode", "inputs": {}}  # not a value node: refused as before
    assert "must be a value, not a link from node 20" in _error(registry, api)[0]


# -- other classes --------------------------------------------------------------------
@pytest.mark.parametrize("sampling, zsnr, message", [
    ("img_to_img", False, "sampling 'img_to_img' has no lcmgraph equivalent ('eps', 'v_prediction', 'x0' become "
                          "the sampler's prediction type, 'lcm' LCM's schedule)"),
    ("lcm", True, "zsnr (zero terminal SNR) has no lcmgraph equivalent"),
])
def test_model_sampling_without_equivalent(registry, sampling, zsnr, message):
    api = _with()
    api["10"]["inputs"].update(sampling=sampling, zsnr=zsnr)
    assert _error(registry, api) == [f"node 10 (ModelSamplingDiscrete): {message}"]


def test_sdxl_prompt_node_carries_its_sizes(registry):
    sdxl = {"class_type": "CLIPTextEncodeSDXL", "inputs": {
        "clip": ["4", 1], "width": 1024, "height": 768, "crop_w": 8, "crop_h": 16, "target_width": 512,
        "target_height": 384, "text_g": "a tree", "text_l": "a tree"}}
    doc = load_any(_with(**{"6": sdxl}), registry)
    assert doc["nodes"]["6"] == {"type": "TextEncode", "inputs": {
        "clip": {"link": ["4", "clip"]}, "text": "a tree", "original_width": 1024, "original_height": 768,
        "crop_left": 8, "crop_top": 16, "target_width": 512, "target_height": 384}}
    sdxl["inputs"]["text_l"] = "a bush"
    assert _error(registry, _with(**{"6": sdxl})) == [
        "node 6 (CLIPTextEncodeSDXL): different text_g and text_l: lcmgraph's TextEncode gives both encoders one text"]


def test_tiled_vae_nodes(registry):
    api = _with(**{"8": {"class_type": "VAEDecodeTiled", "inputs": {
        "samples": ["3", 0], "vae": ["4", 2], "tile_size": 512, "overlap": 64, "temporal_size": 64, "temporal_overlap": 8}}})
    doc = load_any(api, registry)
    assert doc["nodes"]["8"] == {"type": "VAEDecode", "inputs": {
        "vae": {"link": ["4", "vae"]}, "tiled": True, "latent": {"link": ["3", "latent"]}}}
    assert doc["meta"]["comfy_import"]["notes"] == [
        "node 8 (VAEDecodeTiled): tile size and overlap are not carried over (lcmgraph tiles with diffusers' VAE tiling)"]


def test_controlnet_advanced_passes_the_negative_through(registry):
    nodes = load_any(load("api_controlnet.json"), registry)["nodes"]
    assert nodes["14"] == {"type": "ApplyControlNet", "inputs": {
        "conditioning": {"link": ["6", "conditioning"]}, "control_net": {"link": ["12", "control_net"]},
        "image": {"link": ["13", "image"]}, "strength": 0.8, "start": 0.0, "end": 0.75}}
    assert nodes["3"]["inputs"]["negative"] == {"link": ["7", "conditioning"]}


def test_clip_set_last_layer_is_the_node_for_every_layer(registry):
    # -1 is not a no-op everywhere: on SDXL it is the last layer, not SDXL's default (the penultimate).
    for layer in (-1, -2, -12):
        api = _with(**{"11": {"class_type": "CLIPSetLastLayer", "inputs": {"clip": ["4", 1], "stop_at_clip_layer": layer}}})
        api["6"]["inputs"]["clip"] = ["11", 0]
        nodes = load_any(api, registry)["nodes"]
        assert nodes["11"] == {"type": "CLIPSetLastLayer", "inputs": {"clip": {"link": ["4", "clip"]},
                                                                      "stop_at_clip_layer": layer}}
        assert nodes["6"]["inputs"]["clip"] == {"link": ["11", "clip"]}


@pytest.mark.parametrize("text", ["a (red:1.3) circle", "embedding:easynegative, blurry", "a red circle (round)"])
def test_comfy_prompt_syntax_is_read_as_comfyui_reads_it(registry, text):
    # TextEncode's default syntax ("comfy") reads weights and embeddings: nothing to note.
    api = _with()
    api["6"]["inputs"]["text"] = text
    converted = load_any(api, registry)
    assert converted["meta"]["comfy_import"].get("notes", []) == []
    assert converted["nodes"]["6"]["inputs"]["text"] == text
    assert "syntax" not in converted["nodes"]["6"]["inputs"]
