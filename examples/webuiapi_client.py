"""The webuiapi client (AUTOMATIC1111's API) against PICO.

pip install webuiapi; start `pico serve --demo`; then: python examples/webuiapi_client.py
"""

import webuiapi

api = webuiapi.WebUIApi(host="127.0.0.1", port=5088)

print(api.util_get_model_names())
api.util_set_model("stabilityai/stable-diffusion-xl-base-1.0")

result = api.txt2img(prompt="ginger cat", negative_prompt="blurry", seed=42, steps=25,
                     cfg_scale=5.0, width=1024, height=1024, sampler_name="DPM++ 2M", scheduler="karras")
result.image.save("webui-txt2img.png")
print(result.info["all_seeds"])

redrawn = api.img2img(images=[result.image], prompt="ginger cat, watercolour", denoising_strength=0.6,
                      width=1024, height=1024, steps=25)
redrawn.image.save("webui-img2img.png")
