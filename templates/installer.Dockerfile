# Installer image: the base image plus the Palette agent and overlays/files, the root
# filesystem of the installer ISO.
FROM {{ agent_image }} AS agent
FROM {{ base_tag }}
COPY --from=agent / /
COPY overlay/ /
{% if edge_custom_config %}COPY edge-custom-config.yaml /oem/.edge_custom_config.yaml
{% endif -%}
