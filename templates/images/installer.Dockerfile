{#- The installer image (CanvOS's +iso-image), the root filesystem of the installer ISO: the
    base image, the whole stylus framework and the checkout's overlay/files/. -#}
# Installer image: {{ os_distribution }} {{ os_version }} with the Palette agent {{ pe_version }}.
FROM {{ agent_image }} AS stylus
FROM {{ base_tag }}
COPY --from=stylus / /
COPY overlay/ /
RUN if [ -f /etc/logrotate.d/stylus.conf ]; then chmod 644 /etc/logrotate.d/stylus.conf; fi
RUN rm -f /etc/ssh/ssh_host_* /etc/ssh/moduli
RUN touch /etc/machine-id && chmod 444 /etc/machine-id
