# The ISO builder image: the tools forge runs to master the installer ISO (squashfs-tools,
# xorriso, GRUB, mtools, dosfstools), on ISO_TOOLS_IMAGE (any Debian-like image with apt).
FROM {{ iso_tools_image }}
RUN apt-get update \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
      squashfs-tools xorriso mtools dosfstools grub-common {{ grub_packages }} \
 && rm -rf /var/lib/apt/lists/*
