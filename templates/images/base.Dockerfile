{#- The base image every provider and installer image starts from (CanvOS's +base-image): the
    user's steps (os_tag), USB media support in the initramfs, the OS preparation of
    templates/os/OS_DISTRIBUTION.Dockerfile (os_preparation), /etc/kairos-release, clean-up and
    the kernel command line in /etc/cos/bootargs.cfg. -#}
# Base image: {{ os_distribution }} {{ os_version }} ({{ arch }}).
FROM {{ os_tag }}
RUN mkdir -p /etc/dracut.conf.d && printf '%s\n' 'hostonly="no"' 'add_drivers+=" xhci_pci_renesas "' 'force_drivers+=" xhci_pci_renesas "' > /etc/dracut.conf.d/99-usb-media.conf
{{ os_preparation }}
{%- if os_distribution == "ubuntu" and (os_version == "20" or os_version == "22") %}{% set label = os_version ~ ".04-standard-" ~ arch ~ "-generic" %}{% else %}{% set label = os_version ~ "-standard-" ~ arch ~ "-generic" %}{% endif %}
RUN if [ -f /etc/kairos-release ]; then \
      sed -i 's/^KAIROS_NAME=.*/KAIROS_NAME="kairos-core-{{ os_distribution }}-{{ os_version }}"/' /etc/kairos-release; \
      sed -i '/^KAIROS_IMAGE_LABEL=/d' /etc/kairos-release; \
      echo 'KAIROS_IMAGE_LABEL="{{ label }}"' >> /etc/kairos-release; \
    else \
      echo 'KAIROS_NAME="kairos-core-{{ os_distribution }}-{{ os_version }}"' >> /etc/kairos-release; \
      echo 'KAIROS_IMAGE_LABEL="{{ label }}"' >> /etc/kairos-release; \
    fi
RUN find /var/cache -mindepth 1 -maxdepth 1 ! -name 'cracklib' -exec rm -rf {} + && journalctl --vacuum-size=1K && rm -rf /etc/machine-id && rm -rf /var/lib/dbus/machine-id
RUN touch /etc/machine-id && chmod 444 /etc/machine-id
RUN rm /tmp/* -rf
{% if disable_selinux -%}
RUN if grep "security=selinux" /etc/cos/bootargs.cfg > /dev/null; then sed -i 's/security=selinux //g' /etc/cos/bootargs.cfg; fi && \
    if grep "selinux=1" /etc/cos/bootargs.cfg > /dev/null; then sed -i 's/selinux=1/selinux=0/g' /etc/cos/bootargs.cfg; fi
{% endif -%}
RUN if ! grep -Fq "systemd.unified_cgroup_hierarchy=1" /etc/cos/bootargs.cfg; then sed -i 's|\(set baseCmd="[^"]*\)"|\1 systemd.unified_cgroup_hierarchy=1"|' /etc/cos/bootargs.cfg; fi
RUN if ! grep -Fq "rd.driver.blacklist=nouveau" /etc/cos/bootargs.cfg; then sed -i 's|\(set baseCmd="[^"]*\)"|\1 rd.driver.blacklist=nouveau modprobe.blacklist=nouveau nouveau.modeset=0"|' /etc/cos/bootargs.cfg; fi
