from django.urls import path

from emporium.search import api

urlpatterns = [
    path("search/", api.SearchView.as_view(), name="search-api"),
    path("search/suggest/", api.SuggestView.as_view(), name="search-suggest"),
]
