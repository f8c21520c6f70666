"""The import endpoints: upload, progress, rejected rows, cancellation.

The upload is read by the view itself, never by a DRF parser: a raw body
(``text/csv``, ``application/x-ndjson``) 64 KiB at a time from the request
stream, a multipart body through :class:`~.storage.ImportUploadHandler`,
installed before authentication so that even a session's CSRF check, which
parses the form, streams the file to disk instead of memory.
"""

from __future__ import annotations

from typing import Any

from django.http import HttpRequest, StreamingHttpResponse
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema
from rest_framework import status
from rest_framework.exceptions import UnsupportedMediaType
from rest_framework.parsers import BaseParser
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from emporium.accounts.models import User
from emporium.catalog import tasks
from emporium.catalog.imports import selectors, services
from emporium.catalog.imports.storage import (
    ImportUploadHandler,
    StoredUpload,
    import_max_bytes,
    stream_pieces,
    too_large,
    upload_store,
)
from emporium.core.errors import InvalidInput
from emporium.core.permissions import ActionPermissions, RequiredPermissions

IMPORT_PERMISSIONS = ("catalog.add_product", "catalog.change_product", "catalog.add_category")
READ_PERMISSIONS = ("catalog.change_product",)
RAW_MEDIA_TYPES = frozenset(services.FORMAT_OF_CONTENT_TYPE) | {"application/octet-stream"}


class _StreamedBodyParser(BaseParser):
    """Declares an accepted media type; the view streams the body itself."""

    def parse(self, stream: Any, media_type: str | None = None, parser_context: Any = None) -> Any:
        raise NotImplementedError("the import view streams the body to disk")


class _CsvParser(_StreamedBodyParser):
    media_type = "text/csv"


class _NdjsonParser(_StreamedBodyParser):
    media_type = "application/x-ndjson"


class _MultipartParser(_StreamedBodyParser):
    media_type = "multipart/form-data"


class ProductImportListView(APIView):
    permission_classes = [ActionPermissions]
    required_permissions: RequiredPermissions = {"post": IMPORT_PERMISSIONS}
    parser_classes = [_CsvParser, _NdjsonParser, _MultipartParser]
    http_method_names = ["post", "options"]

    def initialize_request(self, request: HttpRequest, *args: Any, **kwargs: Any) -> Request:
        # Before authentication: a session's CSRF check reads the form, and with
        # this handler the file part goes to disk as it arrives.
        request.upload_handlers = [ImportUploadHandler(request)]
        return super().initialize_request(request, *args, **kwargs)

    @extend_schema(
        operation_id="product_import_create",
        summary="Import products from a CSV or NDJSON file (catalog managers)",
        description=(
            "Send the file as the body (Content-Type text/csv or application/x-ndjson, "
            "optionally with a charset) or as the 'file' part of multipart/form-data. "
            "Columns: sku, name, price, category (required), description, stock, attributes. "
            "The file is stored and processed in the background; 202 answers the new import, "
            "200 the existing one when the same content was uploaded before. "
            "See docs/api.md, 'Bulk catalog import'."
        ),
        parameters=[
            OpenApiParameter(
                # Not "format": DRF reads ?format= as the response's renderer.
                "file_format",
                OpenApiTypes.STR,
                enum=["csv", "ndjson"],
                description="Overrides the format taken from the content type or the file name.",
            )
        ],
        request={
            "text/csv": OpenApiTypes.BINARY,
            "application/x-ndjson": OpenApiTypes.BINARY,
            "multipart/form-data": {
                "type": "object",
                "properties": {"file": {"type": "string", "format": "binary"}},
            },
        },
        responses={
            200: OpenApiResponse(description="The same file was imported before: that import."),
            202: OpenApiResponse(description="The import, queued."),
            400: OpenApiResponse(description="Empty file, unknown format or encoding, header."),
            413: OpenApiResponse(description="Larger than CATALOG_IMPORT_MAX_BYTES."),
            415: OpenApiResponse(description="Not CSV, NDJSON or multipart."),
        },
    )
    def post(self, request: Request) -> Response:
        upload = self._upload_of(request)
        item, created = services.import_create(
            upload=upload,
            user=_account_of(request),
            file_format=request.query_params.get("file_format"),
        )
        if created:
            tasks.product_import_enqueue(import_id=item.pk)
        return Response(
            selectors.import_progress(item),
            status=status.HTTP_202_ACCEPTED if created else status.HTTP_200_OK,
        )

    def _upload_of(self, request: Request) -> StoredUpload:
        django_request = request._request
        content_type = request.META.get("CONTENT_TYPE", "")
        media_type = content_type.split(";", 1)[0].strip().lower()
        if media_type == "multipart/form-data":
            django_request.FILES  # noqa: B018 - parses the body through ImportUploadHandler
            handler = django_request.upload_handlers[0]
            if not isinstance(handler, ImportUploadHandler) or handler.stored is None:
                raise InvalidInput(details={"file": ["Send the file as the 'file' part."]})
            return handler.stored
        if media_type not in RAW_MEDIA_TYPES:
            raise UnsupportedMediaType(media_type or "none")
        length = request.META.get("CONTENT_LENGTH") or ""
        if length.isdigit() and int(length) > import_max_bytes():
            raise too_large()
        return upload_store(
            pieces=stream_pieces(django_request),
            file_name=request.query_params.get("file_name", ""),
            content_type=content_type,
        )


def _account_of(request: Request) -> User | None:
    return request.user if isinstance(request.user, User) else None


class ProductImportDetailView(APIView):
    permission_classes = [ActionPermissions]
    required_permissions: RequiredPermissions = {"get": READ_PERMISSIONS}
    http_method_names = ["get", "head", "options"]

    @extend_schema(
        operation_id="product_import_retrieve",
        summary="An import's progress and counts (catalog managers)",
        responses={200: OpenApiTypes.OBJECT, 404: OpenApiResponse(description="No such import.")},
    )
    def get(self, request: Request, pk: int) -> Response:
        return Response(selectors.import_progress(selectors.import_get(import_id=pk)))


class ProductImportErrorsView(APIView):
    permission_classes = [ActionPermissions]
    required_permissions: RequiredPermissions = {"get": READ_PERMISSIONS}
    http_method_names = ["get", "head", "options"]

    @extend_schema(
        operation_id="product_import_errors",
        summary="An import's rejected rows as CSV: row, column, message, value",
        responses={
            (200, "text/csv"): OpenApiTypes.STR,
            404: OpenApiResponse(description="No such import."),
        },
    )
    def get(self, request: Request, pk: int) -> StreamingHttpResponse:
        item = selectors.import_get(import_id=pk)
        response = StreamingHttpResponse(
            selectors.import_errors_csv(product_import=item), content_type="text/csv; charset=utf-8"
        )
        response["Content-Disposition"] = f'attachment; filename="import-{item.pk}-errors.csv"'
        return response


class ProductImportCancelView(APIView):
    permission_classes = [ActionPermissions]
    required_permissions: RequiredPermissions = {"post": IMPORT_PERMISSIONS}
    http_method_names = ["post", "options"]

    @extend_schema(
        operation_id="product_import_cancel",
        summary="Stop an import after the chunk it is applying (catalog managers)",
        request=None,
        responses={
            200: OpenApiTypes.OBJECT,
            404: OpenApiResponse(description="No such import."),
            409: OpenApiResponse(description="The import has already finished."),
        },
    )
    def post(self, request: Request, pk: int) -> Response:
        item = services.import_cancel(product_import=selectors.import_get(import_id=pk))
        return Response(selectors.import_progress(item))
