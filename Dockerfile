# StockTracker Live: `docker build -t stocktracker .` then
# `docker run -p 8000:8000 -e REDIS_URL=redis://... stocktracker` (see README, Deploying).
# The start command is the Procfile's: `python -m app` (options in app/launch.py).
ARG PYTHON_IMAGE=python:3.11-slim
FROM ${PYTHON_IMAGE}

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PATH=/opt/venv/bin:$PATH

# The exact versions the tests ran with (requirements.txt), in a venv of their own.
COPY requirements.txt /tmp/requirements.txt
RUN python -m venv /opt/venv \
    && pip install -r /tmp/requirements.txt \
    && rm /tmp/requirements.txt \
    && useradd --system --no-create-home --shell /usr/sbin/nologin --uid 10001 app

# The app's code and files, owned by root and read-only to the user that runs it.
WORKDIR /srv
COPY app app
COPY templates templates
COPY static static
COPY data data

# Platforms set PORT (and HOST is all interfaces in a container); every other setting comes
# from the environment too (README, Configuration).
ENV HOST=0.0.0.0 \
    PORT=8000
EXPOSE 8000
USER app

HEALTHCHECK --interval=15s --timeout=5s --start-period=20s --retries=3 \
    CMD ["python", "-m", "app.healthcheck"]

# Exec form: python is PID 1 and gets SIGTERM itself (the app drains, then exits 0).
CMD ["python", "-m", "app"]
