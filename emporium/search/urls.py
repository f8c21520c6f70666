from django.urls import path

from emporium.search import api

urlpatterns = [path("search/", api.SearchView.as_view(), name="search-api")]
