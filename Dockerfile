# One image for every Salesbook service: the command picks what runs, e.g.
#   docker run salesbook serve orders      docker run salesbook migrate
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

WORKDIR /app
# Dependencies first, from the pinned list alone: this layer is rebuilt only when the pins
# change, not on every change to the source.
COPY deploy/constraints.txt ./constraints.txt
RUN pip install -c constraints.txt -r constraints.txt
COPY pyproject.toml README.md ./
COPY shared ./shared
COPY services ./services
RUN pip install -c constraints.txt . \
    && useradd --system --home-dir /var/lib/salesbook --create-home salesbook \
    && install -d -o salesbook -g salesbook /var/lib/salesbook/backups

# The services listen on all interfaces inside the container; the data folder only holds a
# generated signing secret when SALESBOOK_SECRET_KEY is unset, which production refuses.
# backups/ exists in the image, owned by salesbook, so a volume mounted there starts
# writable by it (docker-compose.yml's backup service).
ENV SALESBOOK_HOST=0.0.0.0 \
    SALESBOOK_PORT=8000 \
    SALESBOOK_DATA_DIR=/var/lib/salesbook
USER salesbook
WORKDIR /var/lib/salesbook
EXPOSE 8000

ENTRYPOINT ["salesbook"]
CMD ["--help"]
