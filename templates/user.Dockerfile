# Your own base-image steps (like CanvOS's Dockerfile): every line here is added to the base
# image after the OS preparation. Do not put secrets here: build steps end up in the history.
